"""The data plane of one worker: its model's state and its predictions, with no HTTP in it.

`DataPlane` loads the verified model, warms it up and reports readiness; `admit()` takes
a request on, or refuses it (`admission.AdmissionLimit`); `predict(rows, ticket)` answers
rows with the service's typed response, predicted on the inference thread
(`batching.InferenceQueue`), or on the event loop for a small request alone in flight that
finds the model idle, if the service allows it (`ModelService.predict_inline_rows`). A watchdog on the
event loop checks that thread: dead, or stuck in one call for over MAX_CALL_SECONDS while
requests wait, the worker is no longer `live` (liveness probes fail, so Kubernetes
restarts it) and everyone waiting gets 503 at once. It calls the model itself, and records
each call in its `Metrics`. The transports (`modelserving.rest`: the typed route, the
protocol's routes, health and probes, metrics; `modelserving.grpc`) are thin layers over
it, each speaking its own API's terms. With SHADOW_URL set, its `shadow` mirrors a sample of the
typed route's answered requests to a candidate version (`shadow.Shadow`). With an OTLP endpoint
set (OTEL_*), its `tracing` adds each request's queue wait, batch and model call to its trace
(`tracing.Tracing`). With PAYLOAD_LOG_URL or PAYLOAD_LOG_FILE set, its `payloads` logs a sample
of every route's answered requests as CloudEvents (`payloads.PayloadLog`).
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from modelserving.formats.artifacts import LoadedModel, load_model
from modelserving.runtime.admission import AdmissionLimit, Refused, Ticket
from modelserving.runtime.batching import InferenceQueue
from modelserving.runtime.drift import InputDrift, check_reference
from modelserving.runtime.metrics import AdmissionMetrics, Metrics
from modelserving.runtime.payloads import PayloadLog, Route
from modelserving.runtime.process import freeze_survivors
from modelserving.runtime.shadow import Shadow
from modelserving.runtime.tracing import Tracing
from modelserving.service import ModelService, prediction_list_field
from modelserving.settings import Settings

log = logging.getLogger("modelserving")
WATCHDOG_SECONDS = 0.25
LAG_PROBE_SECONDS = 0.005  # how often the event loop's lateness is measured
SHED_LOG_SECONDS = 10.0


class NotReady(Exception):
    """The model is not loaded (yet, or any more)."""


@dataclass(frozen=True)
class ModelState:
    """What clients are told about the model: `version` None until it is loaded."""

    name: str
    version: str | None
    platform: str  # the library the model was trained with, as its card names it first
    ready: bool
    shutting_down: bool


class DataPlane:
    """One worker's model: loading, readiness, metadata and `predict(rows)`."""

    def __init__(
        self, service: ModelService[Any, Any], settings: Settings, metrics: Metrics | None = None
    ) -> None:
        self.service = service
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.booted_at = datetime.now(UTC)
        self.model: LoadedModel | None = None
        self.ready = False
        self.shutting_down = False
        self.live = True  # the inference thread runs and is not stuck in one call
        self.admission = AdmissionLimit(
            ceiling=settings.max_concurrent_requests,
            max_queue_seconds=settings.max_queue_seconds,
            adaptive=settings.adaptive_concurrency,
        )
        self._health_listeners: list[Callable[[bool], object]] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._lag_probe: asyncio.Task[None] | None = None
        self._last_shed_log = -SHED_LOG_SECONDS
        self._metrics = AdmissionMetrics(self.metrics, service.name)
        field, _ = prediction_list_field(service.response_type)
        self._predictions_field = field
        self._count_outputs: Callable[[Sequence[BaseModel]], None] | None = None
        # The model card's reference distribution: live inputs counted against it (runtime/drift.py).
        self.drift: InputDrift | None = None
        # SHADOW_URL: the typed route's answers, mirrored to a candidate version (runtime/shadow.py).
        self.shadow = Shadow(service, settings, self.metrics) if settings.shadow_url else None
        self.tracing = Tracing.from_settings(service.name, settings)
        # PAYLOAD_LOG_URL or _FILE: a sample of every route's answers, as CloudEvents (runtime/payloads.py).
        logging_payloads = settings.payload_log_url is not None or settings.payload_log_file is not None
        self.payloads = PayloadLog(service, settings, self.metrics) if logging_payloads else None
        self._queue = InferenceQueue(
            self._predict,
            field,
            max_rows=settings.max_batch_size,
            max_wait=settings.batch_wait_microseconds / 1e6,
            batching=settings.micro_batching,
            inline_rows=service.predict_inline_rows,
            name=f"{service.name}-inference",
            on_taken=self._taken,
            on_dropped=self._dropped,
            tracing=self.tracing,
        )

    @property
    def state(self) -> ModelState:
        return ModelState(
            name=self.service.name,
            version=self.model.card.version if self.model else None,
            platform=next(iter(self.model.card.library_versions), "") if self.model else "",
            ready=self.ready and not self.shutting_down,
            shutting_down=self.shutting_down,
        )

    async def load(self) -> None:
        """Load and verify the model, warm it up, then start predicting; errors stop start-up."""
        service = self.service
        started = time.perf_counter()
        loaded = await asyncio.to_thread(
            load_model,
            self.settings.model_dir or service.model_dir,
            expected_name=service.name,
            artifact_format=service.artifact_format,
        )
        if service.health_keys is not None:  # a card it cannot report stops start-up here
            service.health_keys.values(self.settings, loaded.card)
        self.drift = self._input_drift(loaded)
        self.metrics.model_load_seconds.labels(service.name, loaded.card.version).set(
            time.perf_counter() - started
        )
        if service.prepare is not None:
            loaded = await asyncio.to_thread(service.prepare, loaded)
        await asyncio.to_thread(service.predict, loaded, list(service.examples))
        if service.output is not None:
            self._count_outputs = self.metrics.output_counter(
                service.name, loaded.card.version, service.output
            )
        freeze_survivors()
        if self.shadow is not None:
            self.shadow.start(loaded.card.version)
        if self.tracing is not None:
            self.tracing.version = loaded.card.version
        if self.drift is not None:
            self.drift.start()
        if self.payloads is not None:
            self.payloads.start(loaded.card.version)
        self._queue.start()
        self._watchdog = asyncio.create_task(self._watch(), name=f"{service.name}-watchdog")
        self._lag_probe = asyncio.create_task(self._measure_lag(), name=f"{service.name}-lag")
        self.model = loaded
        self.ready = True
        log.info("model ready", extra={"model": loaded.card.name, "version": loaded.card.version})

    async def stop(self, timeout: float) -> None:
        """Stop taking predictions; finish the queued ones within `timeout` seconds."""
        self.ready = False
        self.shutting_down = True
        # No more requests come (the servers have drained them): the shadow and the payload log
        # finish, each within its own bound.
        off_path: list[tuple[Callable[[float], None], float]] = []
        if self.shadow is not None:
            off_path.append((self.shadow.stop, self.settings.shadow_timeout_seconds))
        if self.payloads is not None:
            off_path.append((self.payloads.stop, self.settings.payload_log_timeout_seconds))
        for stop, bound in off_path:
            started = time.monotonic()
            await asyncio.to_thread(stop, min(timeout, bound))
            timeout = max(0.0, timeout - (time.monotonic() - started))
        await asyncio.to_thread(self._queue.stop, timeout)
        if self.drift is not None:
            await asyncio.to_thread(self.drift.stop, min(timeout, 1.0))
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)
        for task in (self._watchdog, self._lag_probe):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def on_health_change(self, listener: Callable[[bool], object]) -> None:
        """Call `listener(live)` on the event loop whenever `live` changes."""
        self._health_listeners.append(listener)

    def refusal(self) -> Refused | None:
        """Why a request arriving now would be refused (and counted as shed), or None: the
        transports ask before reading a request, to refuse it at the least cost."""
        if not self.live:
            return self._shed(self.unavailable())
        if self.admission.full():
            return self._shed(self.admission.refusal(self.service.name))
        return None

    def admit(self, now: float | None = None) -> Ticket:
        """A ticket for one inference request (release it when answered), or `Refused` (503)."""
        ticket = self.try_admit(now)
        if isinstance(ticket, Refused):
            raise ticket
        return ticket

    def try_admit(self, now: float | None = None) -> Ticket | Refused:
        """`admit`, its refusal returned rather than raised: the cheapest path, for refusals by
        thousands a second."""
        if not self.live:
            return self._shed(self.unavailable())
        ticket = self.admission.try_admit(now)
        if ticket is None:
            return self._shed(self.admission.refusal(self.service.name))
        self._metrics.in_flight.inc()
        return ticket

    def _shed(self, refusal: Refused) -> Refused:
        self._metrics.shed(refusal.reason)
        now = time.monotonic()
        if now - self._last_shed_log >= SHED_LOG_SECONDS:  # a line per spell, not per request
            self._last_shed_log = now
            log.warning(
                "refusing requests: %s",
                refusal.message,
                extra={"model": self.service.name, "reason": refusal.reason},
            )
        return refusal

    def release(self, ticket: Ticket) -> None:
        """The request is answered, refused, or its caller gone; idempotent."""
        if not ticket.released:
            self.admission.release(ticket)
            self._metrics.in_flight.dec()
            if ticket.abandoned and not ticket.taken:  # wherever it was when its caller left
                self._metrics.shed("cancelled")

    async def predict(
        self, rows: Sequence[Any], ticket: Ticket | None = None, route: Route | None = None
    ) -> BaseModel:
        """The typed response for `rows`; NotReady before the model is loaded, `Refused` when the
        worker cannot take it or its deadline passes. Without a `ticket`, admits it here. `route`:
        where the request came in (payload logging names it), None for the typed route."""
        if self.model is None:
            raise NotReady(f"model '{self.service.name}' is not loaded yet")
        if ticket is not None:
            if not self.live:
                raise self.unavailable()
            response = await self._queue.submit(rows, ticket, alone=self.admission.in_flight <= 1)
        else:
            own = self.admit()
            try:
                response = await self._queue.submit(rows, own, alone=self.admission.in_flight <= 1)
            finally:
                self.release(own)
        if self.drift is not None:  # an append: the counting is the drift thread's
            self.drift.offer(rows)
        if self.payloads is not None:
            self.payloads.offer(rows, response, route)
        return response

    def _input_drift(self, loaded: LoadedModel) -> InputDrift | None:
        """Counting of live inputs against the card's reference; None (with a warning) for a card
        written without one. ModelLoadError if it names a field the service's rows lack."""
        card, service = loaded.card, self.service
        if card.reference is None:
            log.warning(
                "the model card has no reference distribution: live inputs are not counted for "
                "drift (retrain to add one)",
                extra={"model": card.name, "version": card.version},
            )
            return None
        check_reference(card, service.item_type)
        return InputDrift(self.metrics, service.name, card.version, card.reference, service.output)

    @property
    def queued_rows(self) -> int:
        """Rows admitted and waiting for the model (for operators' tools and tests)."""
        return self._queue.pending_rows

    def unavailable(self) -> Refused:
        return Refused(f"model '{self.service.name}' is not responding", "unavailable")

    def _dropped(self, reason: str) -> None:
        """On the inference thread: a request dropped unpredicted (its caller gone: counted as
        its ticket is released, wherever the caller left from)."""
        if reason != "cancelled":
            self._metrics.shed(reason)

    def _taken(self, ticket: Ticket, taken_at: float) -> None:
        """On the inference thread: the model took `ticket`'s request (or its deadline passed)."""
        ticket.taken = not ticket.expired(taken_at)
        self.admission.observe(ticket, taken_at)
        self._metrics.queue_seconds.observe(taken_at - ticket.admitted_at)

    async def _measure_lag(self) -> None:
        """How late the event loop runs a timer, every LAG_PROBE_SECONDS: admission's second measure."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_PROBE_SECONDS
            await asyncio.sleep(LAG_PROBE_SECONDS)
            now = loop.time()
            self.admission.lagged(now, now - due)

    async def _watch(self) -> None:
        """Every WATCHDOG_SECONDS: is the inference thread alive and not stuck?"""
        while True:
            await asyncio.sleep(WATCHDOG_SECONDS)
            self._metrics.limit.set(int(self.admission.limit))
            alive = self._queue.alive or self.shutting_down
            stuck = self._queue.stuck(time.monotonic(), self.settings.max_call_seconds)
            live = alive and not stuck
            if not live:
                for _ in range(self._queue.fail_waiting(self.unavailable())):
                    self._metrics.shed("unavailable")
            if live != self.live:
                self.live = live
                why = "its inference thread has died" if not alive else "a model call is stuck"
                if live:
                    log.warning("the model responds again", extra={"model": self.service.name})
                else:
                    log.error("the model is not responding: %s", why, extra={"model": self.service.name})
                for listener in self._health_listeners:
                    listener(live)

    def _predict(self, rows: Sequence[Any]) -> BaseModel:
        assert self.model is not None, "the queue starts once the model is loaded"
        started = time.perf_counter()
        response: BaseModel = self.service.predict(self.model, rows)
        seconds = time.perf_counter() - started
        self.metrics.observe_prediction(self.service.name, self.model.card.version, len(rows), seconds)
        if self._count_outputs is not None:
            self._count_outputs(getattr(response, self._predictions_field))
        return response
