"""Payload logging: a sample of answered predictions, from every route, kept as CloudEvents for
retraining and audit (PAYLOAD_LOG_URL or PAYLOAD_LOG_FILE; off when neither is set).

On the request path, `DataPlane.predict` hands each answered request to `PayloadLog.offer` with
the route it came through (the typed REST route, the Open Inference Protocol over REST, or over
gRPC: all three reach the model through it). A random draw (PAYLOAD_LOG_SAMPLE_RATE) decides;
a sampled request's rows and typed response (the objects themselves: nothing is serialised
there), its request id, route and the time go into a bounded queue with `put_nowait`
(`offpath.OffPath`, shared with the shadow). A full queue (PAYLOAD_LOG_QUEUE_SIZE requests, or
QUEUE_ROWS rows in all) drops the request, counted. That is all the request path pays, and
with payload logging off, `DataPlane.payloads` is None and it pays one test of it.

One daemon thread per worker, below the worker's priority, turns each into one CloudEvent
(the cloudevents SDK's v1.0 event) and writes it to the sink:
- `type` EVENT_TYPE, `source` /modelserving/<model>, `id` a fresh UUID (request ids come from
  clients and may repeat; a receiver deduplicates by source and id), `time` when the request was
  answered, extensions `modelversion`, `requestid` and `protocol` (for a broker's filters);
- `data` (JSON): model_name, model_version, request_id, protocol (`rest` for the typed route,
  `v2-rest`, `v2-grpc`), route (its template, or the gRPC method), rows (as validated: the
  model's inputs, defaults filled in), response (the typed response, whichever protocol carried
  it to the client) and `personal` (how the personal fields were treated).
One event per request holds both the inputs and the outputs, rather than KServe's pair of
events (`...inference.request` and `...inference.response`) that a consumer joins by id: a
training set's row needs both, and a pair half-dropped by a full queue would be no use.

The sinks. PAYLOAD_LOG_URL: each event is POSTed in the HTTP binding's binary mode (`ce-*`
headers, the data as the body), as KServe's logger posts, over one keep-alive connection
(shadow.Candidate: a socket and httptools), within PAYLOAD_LOG_TIMEOUT_SECONDS; any 2xx is
`logged`. PAYLOAD_LOG_FILE: the event in the JSON format (structured mode), one per line,
appended with O_APPEND in one write, so a pod's workers sharing the file write whole lines.

Personal data. The fields a service's row schema marks PERSONAL (modelserving.service) are
replaced by `hmac-sha256:<hex>` of their value under PAYLOAD_LOG_HASH_KEY, or left out when no
key is set. A bare SHA-256 would not do: a name is found again by hashing every name in a list.
The keyed hash still lets an audit match one person's requests, and whoever holds the key can
check a given value. Headers are never captured, so neither tokens nor Authorization can reach
an event. Every outcome (the sink's failures: no answer in time, no connection, a status other
than 2xx, a write that failed) is counted in `model_payload_events_total{outcome}` and warned
about at most once per LOG_SECONDS, never raised.
"""

from __future__ import annotations

import hmac
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cloudevents.core.bindings.http import to_binary_event
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from prometheus_client import Counter
from pydantic import BaseModel

from modelserving.runtime.logs import request_id
from modelserving.runtime.metrics import PAYLOAD_OUTCOMES, Metrics
from modelserving.runtime.offpath import OffPath, Spells
from modelserving.runtime.shadow import Candidate
from modelserving.service import ModelService, personal_fields
from modelserving.settings import Settings, SettingsError

log = logging.getLogger("modelserving")

EVENT_TYPE = "modelserving.inference.payload"
QUEUE_ROWS = 100_000  # rows held in the queue, at most, whatever its number of requests
LOG_SECONDS = 10.0  # one warning per spell of failures
HASHED = "hmac-sha256"


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request came in, as its event names it."""

    protocol: str  # "rest" (the service's typed route), "v2-rest" or "v2-grpc"
    path: str  # the route's template, or the gRPC method


V2_REST = Route("v2-rest", "/v2/models/{model_name}[/versions/{model_version}]/infer")
V2_GRPC = Route("v2-grpc", "/inference.GRPCInferenceService/ModelInfer")


@dataclass(frozen=True, slots=True)
class Sampled:
    """An answered request, as the request path hands it over."""

    rows: Sequence[BaseModel]
    response: BaseModel
    request_id: str
    route: Route
    answered_at: float  # time.time()


class SinkError(Exception):
    """An event was not written; `outcome` is one of PAYLOAD_OUTCOMES."""

    def __init__(self, outcome: str, why: str) -> None:
        super().__init__(why)
        self.outcome = outcome


class Sink(Protocol):
    """Where events go (`HttpSink`, `FileSink`), used by the logger's thread alone."""

    def write(self, event: CloudEvent) -> None:
        """Write `event`, or raise SinkError."""

    def close(self) -> None:
        """Let go of the connection or the file, once the thread stops."""


class HttpSink:
    """Events POSTed to PAYLOAD_LOG_URL in binary mode, over one keep-alive connection."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self._connection = Candidate(url, timeout)  # the shadow's client: one socket, httptools
        self._path = "" if self._connection.prefix else "/"

    def write(self, event: CloudEvent) -> None:
        message = to_binary_event(event)
        self._connection.close_if_old()  # a new connection may reach another of the receiver's pods
        try:
            answer = self._connection.request("POST", self._path, message.body, dict(message.headers))
        except TimeoutError:
            raise SinkError("timeout", f"no answer within {self._connection.timeout:g} s") from None
        except OSError as error:  # no connection (refused, reset, no such host)
            raise SinkError("unreachable", repr(error)) from None
        except ValueError as error:  # not an HTTP answer
            raise SinkError("failed", repr(error)) from None
        if not 200 <= answer.status < 300:
            raise SinkError("rejected", f"status {answer.status}")

    def close(self) -> None:
        self._connection.close()


class FileSink:
    """Events appended to PAYLOAD_LOG_FILE in the JSON format, one per line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._format = JSONFormat()
        self._fd = open_for_appending(path)

    def write(self, event: CloudEvent) -> None:
        line = self._format.write(event) + b"\n"
        try:
            os.write(self._fd, line)  # one write of the whole line: O_APPEND keeps workers' lines whole
        except OSError as error:
            raise SinkError("failed", repr(error)) from None

    def close(self) -> None:
        os.close(self._fd)


def open_for_appending(path: Path) -> int:
    """A descriptor appending to `path` (created if absent), or SettingsError in one line."""
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError as error:
        raise SettingsError(
            f"PAYLOAD_LOG_FILE={str(path)!r} cannot be opened for appending: {error.strerror} "
            "(in a container, it must be on a mounted volume)"
        ) from None


def check_payload_log(settings: Settings) -> None:
    """At start-up: SettingsError (one line) if PAYLOAD_LOG_FILE cannot be appended to."""
    if settings.payload_log_file is not None:
        os.close(open_for_appending(settings.payload_log_file))


class PayloadLog:
    """One worker's payload logger: `start(version)` once the model is loaded, `offer(...)` after
    each answered prediction, `stop(timeout)` at shutdown."""

    def __init__(self, service: ModelService[Any, Any], settings: Settings, metrics: Metrics) -> None:
        assert settings.payload_log_url is not None or settings.payload_log_file is not None
        self.service = service
        self.settings = settings
        self.metrics = metrics
        self.sample_rate = settings.payload_log_sample_rate
        self.typed_route = Route("rest", service.predict_path)
        self.personal = personal_fields(service.item_type)
        key = settings.payload_log_hash_key
        self._key = None if key is None else key.get_secret_value().encode()
        self._treatment = {name: HASHED if self._key else "dropped" for name in self.personal}
        self._source = f"/modelserving/{service.name}"
        self._version = ""
        self._random = random.Random().random
        self._outcomes: dict[str, Counter] = {}
        self._warnings = Spells(LOG_SECONDS)
        self._sink: Sink | None = None
        self._events: OffPath[Sampled] = OffPath(
            f"{service.name}-payloads",
            settings.payload_log_queue_size,
            QUEUE_ROWS,
            cost=lambda item: len(item.rows),
            dropped=lambda: self._outcomes["dropped"].inc(),
        )

    def start(self, version: str) -> None:
        """Start logging, for the model `version` loaded: every outcome's series made at 0."""
        if self._events.started:
            return
        self._version = version
        self._outcomes = {
            outcome: self.metrics.payload_events.labels(self.service.name, version, outcome)
            for outcome in PAYLOAD_OUTCOMES
        }
        settings = self.settings
        sink: Sink
        if settings.payload_log_url is not None:
            sink = HttpSink(settings.payload_log_url, settings.payload_log_timeout_seconds)
        else:
            assert settings.payload_log_file is not None
            sink = FileSink(settings.payload_log_file)
        self._sink = sink
        self._events.start(self._write, self._crashed, finished=sink.close)

    def offer(self, rows: Sequence[BaseModel], response: BaseModel, route: Route | None) -> None:
        """On the request path, once `rows` are answered by `response`: log a sampled share,
        never waiting. `route` None is the service's typed route."""
        if self.sample_rate < 1.0 and self._random() >= self.sample_rate:
            return
        if self._events.started:
            self._events.put(
                Sampled(rows, response, request_id.get(), route or self.typed_route, time.time())
            )

    @property
    def queued(self) -> int:
        """Requests waiting to be written (for tests and operators' tools)."""
        return self._events.queued

    def stop(self, timeout: float) -> None:
        """Write what is queued for at most `timeout` seconds; what is left then is dropped (counted)."""
        self._events.stop(timeout, drain=True)

    def event(self, item: Sampled) -> CloudEvent:
        """The CloudEvent for `item`, its personal fields hashed or left out."""
        name, version = self.service.name, self._version
        data = {
            "model_name": name,
            "model_version": version,
            "request_id": item.request_id,
            "protocol": item.route.protocol,
            "route": item.route.path,
            "rows": [self._redacted(row.model_dump(mode="json")) for row in item.rows],
            "response": item.response.model_dump(mode="json"),
            "personal": self._treatment,
        }
        attributes = {
            "type": EVENT_TYPE,
            "source": self._source,
            "time": datetime.fromtimestamp(item.answered_at, UTC),
            "datacontenttype": "application/json",
            "modelversion": version,
            "requestid": item.request_id,
            "protocol": item.route.protocol,
        }
        return CloudEvent(attributes=attributes, data=data)

    def _redacted(self, row: dict[str, Any]) -> dict[str, Any]:
        for name in self.personal:
            value = row.pop(name, None)
            if self._key is not None:
                row[name] = None if value is None else self._hashed(value)
        return row

    def _hashed(self, value: Any) -> str:
        assert self._key is not None
        return f"{HASHED}:{hmac.digest(self._key, str(value).encode(), 'sha256').hex()}"

    def _write(self, item: Sampled) -> None:
        assert self._sink is not None
        try:
            self._sink.write(self.event(item))
        except SinkError as error:
            self._outcomes[error.outcome].inc()
            if self._warnings.due():  # a line per spell, not per request
                log.warning(
                    "payload log: an event was not written (%s): %s",
                    error.outcome,
                    error,
                    extra={"request_id": item.request_id, "outcome": error.outcome},
                )
            return
        self._outcomes["logged"].inc()

    def _crashed(self, item: Sampled, error: Exception) -> None:
        self._outcomes["failed"].inc()
        log.error(
            "payload log: writing an event failed", exc_info=error, extra={"request_id": item.request_id}
        )
