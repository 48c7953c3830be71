"""Adaptive batching off the event loop: one supervised inference thread per worker, fed by a queue.

A request puts its rows on the queue and awaits its result; the event loop is free
meanwhile for probes, health checks, metrics and parsing other requests, however long
the model takes. The requests of one turn of the event loop reach the queue together,
at the end of that turn: woken for each, the inference thread would take them one by
one, each taking the GIL from the loop mid-turn. The inference thread takes everything
queued (up to `max_rows` rows) as one batch, predicts it in one call, and hands each
request its own slice of the response. Requests that arrive while a batch runs form the next one, so batches
grow with load and the model's fixed per-call cost is paid once per batch, without
anyone having to know whether a request is alone: Triton's dynamic batcher, and
MLServer's adaptive batching, with no queue delay by default. `max_wait` > 0 holds a
batch that long for more rows.

Nobody's work is done for nothing, and nobody gets another's answer:
- A request whose caller has gone (its `Ticket` abandoned, its task cancelled) or whose
  deadline has passed is dropped as batches are formed, never predicted (`Refused`,
  `DeadlineExceeded`).
- The model must return one prediction per row; a call that returns another number fails.
- A failed call of several requests is retried request by request, so one caller's bad
  rows fail only that caller.
- No exception ends the thread. `stuck()` tells when one call has run too long while work
  waits, and `fail_waiting()` answers everyone waiting at once (the data plane does both).

With batching off (`batching=False`) each request is a batch of its own, still on the
inference thread. `start()` and `stop()` bracket the thread's life (the app's lifespan).

A request of at most `inline_rows` rows that comes alone (its caller says no other request is
in flight) and finds the model idle is predicted at once on its own event loop: for a model
that answers a few rows in tens of microseconds, waking the thread and then the loop again
costs more than the model. Under load, requests keep going to the thread: the loop parses
while the model runs, batches form, and admission control measures the waits.
Only a model whose calls are bounded and short may allow it (the project's NumPy runtimes):
a call that hangs there holds the whole worker, and its liveness probe fails by timing out.
`INLINE_STRIKES` calls in a row there over `inline_budget` send every later request to the
thread.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from modelserving.runtime.admission import DeadlineExceeded, Refused, Ticket
from modelserving.runtime.tracing import RequestTrace, Tracing

log = logging.getLogger("modelserving")
INLINE_BUDGET_SECONDS = 0.002  # ~20 times the hand-off an inline call saves
INLINE_STRIKES = 3  # calls in a row over the budget: a slow model, not a passing stall of the machine

Outcome = BaseModel | Exception


class PredictionCountError(RuntimeError):
    """The model returned a number of predictions other than the number of rows it was given."""


@dataclass(frozen=True)
class _Pending:
    rows: Sequence[Any]
    future: asyncio.Future[BaseModel]
    loop: asyncio.AbstractEventLoop
    ticket: Ticket
    trace: RequestTrace | None = None  # with tracing on (runtime/tracing.py)


def _ignore(ticket: Ticket, taken_at: float) -> None:
    return None


class InferenceQueue:
    """`await submit(rows, ticket)`: the response of `predict_rows`, called on this queue's own thread.

    `on_taken(ticket, at)` hears when the model took each request, or dropped it at its deadline
    (admission control's measure); `on_dropped(reason)` hears of each request dropped unpredicted.
    With `tracing`, each request's wait and each batch and model call are spans of its trace.
    """

    def __init__(
        self,
        predict_rows: Callable[[list[Any]], BaseModel],
        predictions_field: str,
        *,
        max_rows: int,
        max_wait: float = 0.0,
        batching: bool = True,
        inline_rows: int = 0,
        inline_budget: float = INLINE_BUDGET_SECONDS,
        name: str = "inference",
        on_taken: Callable[[Ticket, float], None] = _ignore,
        on_dropped: Callable[[str], None] = lambda reason: None,
        tracing: Tracing | None = None,
    ) -> None:
        self._predict_rows = predict_rows
        self._field = predictions_field
        self._max_rows = max_rows
        self._max_wait = max_wait
        self._batching = batching
        self._inline_rows = inline_rows
        self._inline_budget = inline_budget
        self._inline_strikes = 0  # calls in a row on the event loop over `inline_budget`
        self._on_taken = on_taken
        self._on_dropped = on_dropped
        self._tracing = tracing
        self._pending: deque[_Pending] = deque()
        self._pending_rows = 0
        self._this_turn: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        self._changed = threading.Condition()
        self._calling = threading.Lock()  # held while the model is called, wherever from
        self._stopping = False
        self._finished = False
        self._busy_since: float | None = None  # time.monotonic() the running call began
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def pending_rows(self) -> int:
        """Rows waiting for the model (not those of the call running)."""
        return self._pending_rows

    def stuck(self, now: float, longest_call: float) -> bool:
        """Whether the running call has taken over `longest_call` seconds while requests wait."""
        since = self._busy_since
        return since is not None and now - since > longest_call and bool(self._pending)

    async def submit(
        self, rows: Sequence[Any], ticket: Ticket | None = None, alone: bool = True
    ) -> BaseModel:
        """The model's response for `rows`; `alone`: no other request is in flight on the worker,
        the only case a request may be predicted on the event loop."""
        loop = asyncio.get_running_loop()
        if self._stopping:
            raise RuntimeError("the inference queue is stopped")
        ticket = ticket or Ticket(time.monotonic(), deadline=math.inf)
        if (
            alone
            and len(rows) <= self._inline_rows
            and not ticket.expired(time.monotonic())
            and self._claim_idle_model()
        ):
            return self._predict_inline(rows, ticket)
        future: asyncio.Future[BaseModel] = loop.create_future()
        this_turn = self._this_turn.get(loop)
        if this_turn is None:
            this_turn = self._this_turn[loop] = []
            loop.call_soon(self._enqueue, loop)
        pending = _Pending(rows, future, loop, ticket, self._tracing.queued() if self._tracing else None)
        this_turn.append(pending)
        try:
            return await future
        except asyncio.CancelledError:
            pending.ticket.abandon()  # its caller has gone: the thread skips it
            raise

    def _claim_idle_model(self) -> bool:
        """Take the model for a call on the event loop, if nothing is queued or running."""
        if self._pending or self._this_turn or not self._calling.acquire(blocking=False):
            return False
        if self._pending:  # queued from another event loop meanwhile: its turn first
            self._calling.release()
            return False
        return True

    def _predict_inline(self, rows: Sequence[Any], ticket: Ticket) -> BaseModel:
        """`rows` predicted here and now, the model claimed (`_claim_idle_model`)."""
        started = time.monotonic()
        try:
            _tell(self._on_taken, ticket, started)
            if self._tracing:
                request = self._tracing.queued()
                Tracing.taken(request)  # it waited for nothing: its queue span says so
                with self._tracing.batch([request], len(rows)) as span:
                    outcome = self._call(list(rows), span)
            else:
                outcome = self._call(list(rows))
        finally:
            self._calling.release()
        took = time.monotonic() - started
        self._inline_strikes = self._inline_strikes + 1 if took > self._inline_budget else 0
        if self._inline_strikes >= INLINE_STRIKES and self._inline_rows:
            self._inline_rows = 0
            log.warning(
                "a call of %d rows on the event loop took %.1f ms; the model is called on its thread"
                " from now on",
                len(rows),
                took * 1000,
            )
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _enqueue(self, loop: asyncio.AbstractEventLoop) -> None:
        """At the end of a turn of `loop`: its requests onto the queue, with one wake-up."""
        this_turn = self._this_turn.pop(loop)
        with self._changed:
            if self._finished:  # stopped during this turn: nothing will take them
                self._end_waits(this_turn)
                _set_outcomes(
                    [(pending, RuntimeError("the inference queue is stopped")) for pending in this_turn]
                )
                return
            self._pending.extend(this_turn)
            self._pending_rows += sum(len(pending.rows) for pending in this_turn)
            self._changed.notify()

    def fail_waiting(self, error: Exception) -> int:
        """Answer every queued request with `error` at once; how many there were."""
        with self._changed:
            waiting = list(self._pending)
            self._pending.clear()
            self._pending_rows = 0
        self._end_waits(waiting)
        self._settle(waiting, [error] * len(waiting))
        return len(waiting)

    def stop(self, timeout: float | None = None) -> None:
        """Predict what is queued, then end the thread."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _serve(self) -> None:
        while True:
            batch: list[_Pending] = []
            try:
                with self._changed:
                    while not self._pending and not self._stopping:
                        self._changed.wait()
                    if not self._pending:
                        self._finished = True
                        return
                    if self._batching and self._max_wait > 0:
                        deadline = time.monotonic() + self._max_wait
                        while self._pending_rows < self._max_rows and not self._stopping:
                            left = deadline - time.monotonic()
                            if left <= 0:
                                break
                            self._changed.wait(left)
                with self._calling:  # no call on the event loop while work is queued (see submit)
                    with self._changed:
                        batch = self._take_batch()
                    if batch:
                        self._run(batch)
            except Exception as error:  # a fault of ours: the thread outlives it
                log.exception("inference thread: unexpected error; it goes on")
                self._settle(batch, [error] * len(batch))

    def _take_batch(self) -> list[_Pending]:
        """The next batch, without the requests nobody waits for (answered and counted here)."""
        now = time.monotonic()
        batch: list[_Pending] = []
        dropped: list[tuple[_Pending, Refused]] = []
        total = 0
        while self._pending:
            pending = self._pending[0]
            size = len(pending.rows)
            if batch and (not self._batching or total + size > self._max_rows):
                break
            self._pending.popleft()
            self._pending_rows -= size
            ticket = pending.ticket
            if ticket.abandoned or pending.future.cancelled():
                dropped.append((pending, Refused("the caller has gone", "cancelled")))
                continue
            if ticket.expired(now):
                late = now - ticket.admitted_at
                dropped.append(
                    (pending, DeadlineExceeded(f"deadline exceeded after {late:.3f} s", "deadline"))
                )
                continue
            batch.append(pending)
            total += size
        for pending in batch:
            _tell(self._on_taken, pending.ticket, now)
        self._end_waits(batch)
        self._end_waits([pending for pending, _ in dropped])
        for pending, refusal in dropped:
            if refusal.reason == "deadline":
                _tell(self._on_taken, pending.ticket, now)
            _tell(self._on_dropped, refusal.reason)
        self._settle([pending for pending, _ in dropped], [refusal for _, refusal in dropped])
        return batch

    def _end_waits(self, requests: Sequence[_Pending]) -> None:
        """End the `queue` spans of requests that leave the queue."""
        if self._tracing:
            for pending in requests:
                Tracing.taken(pending.trace)

    def _run(self, batch: list[_Pending]) -> None:
        if self._tracing:
            rows = sum(len(pending.rows) for pending in batch)
            with self._tracing.batch([pending.trace for pending in batch], rows) as span:
                self._run_batch(batch, span)
        else:
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Pending], span: Any = None) -> None:
        rows = [row for pending in batch for row in pending.rows]
        outcome = self._call(rows, span)
        if isinstance(outcome, Exception):
            if len(batch) > 1:
                log.warning(
                    "a batch of %d requests failed (%s); predicting each alone",
                    len(batch),
                    outcome.__class__.__name__,
                )
                for pending in batch:
                    self._settle([pending], [self._call(list(pending.rows), span)])
                return
            self._settle(batch, [outcome])
            return
        if len(batch) == 1:
            self._settle(batch, [outcome])
            return
        predictions = getattr(outcome, self._field)
        starts = list(itertools.accumulate((len(pending.rows) for pending in batch), initial=0))
        self._settle(
            batch,
            [
                outcome.model_copy(update={self._field: predictions[begin:end]})
                for begin, end in itertools.pairwise(starts)
            ],
        )

    def _call(self, rows: list[Any], batch_span: Any = None) -> Outcome:
        """The model's response for `rows`, or what went wrong; never raises. A traced batch's
        call is a span in it."""
        self._busy_since = time.monotonic()
        try:
            if batch_span is None:
                response = self._predict_rows(rows)
            else:
                assert self._tracing is not None, "a batch span comes from tracing"
                with self._tracing.model_call(batch_span, len(rows)):
                    response = self._predict_rows(rows)
            count = len(getattr(response, self._field))
        except Exception as error:
            return error
        except BaseException as error:  # a model's SystemExit must end neither the thread nor a worker
            return RuntimeError(f"the model raised {error.__class__.__name__}")
        finally:
            self._busy_since = None
        if count != len(rows):
            message = f"the model returned {count} predictions for {len(rows)} rows"
            log.error("%s; the call fails", message)
            return PredictionCountError(message)
        return response

    @staticmethod
    def _settle(batch: Sequence[_Pending], outcomes: Sequence[Outcome]) -> None:
        """Hand each request its outcome, on its own event loop (one wake-up per loop and batch)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Pending, Outcome]]] = {}
        for pending, outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(pending.loop, []).append((pending, outcome))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_set_outcomes, settled)
            except RuntimeError:  # that loop has closed: nobody is waiting
                continue


def _tell(callback: Callable[..., None], *arguments: Any) -> None:
    """Call an observer; its fault is logged, never the batch's."""
    try:
        callback(*arguments)
    except Exception:
        log.exception("inference thread: an observer failed")


def _set_outcomes(settled: list[tuple[_Pending, Outcome]]) -> None:
    for pending, outcome in settled:
        if pending.future.done():  # its client went away
            continue
        if isinstance(outcome, Exception):
            pending.future.set_exception(outcome)
        else:
            pending.future.set_result(outcome)
