"""Shadowing: a sample of live requests mirrored to a candidate version of the model, whose
answers are compared with this pod's and never sent to anyone (SHADOW_URL).

Once this worker has answered a request of its service's typed predict route, the route calls
`Shadow.offer`: a random draw (SHADOW_SAMPLE_RATE) decides whether it is mirrored, and if it is,
the request's body as it came, its request id, the caller's Authorization header and the answer
just sent go into a bounded queue with `put_nowait`. A full queue (SHADOW_QUEUE_SIZE requests,
or QUEUE_BYTES of bodies and answers) drops the request, counted. That is all the request path
pays. One daemon thread per worker (the queue and thread are `offpath.OffPath`'s, shared with
payload logging) takes them off the queue and POSTs each body to SHADOW_URL
plus the predict path, with the same `X-Request-ID` (the candidate's logs carry it too), the
caller's Authorization (the candidate checks tokens as this pod does) and `X-Request-Timeout-Ms`
(the candidate drops what the mirror will no longer wait for), then compares the candidate's
predictions row by row with this pod's, by the output the service declares
(`ModelService.output.agree`: the same class, or scores within its tolerance). Both answers are
read from their JSON, so each value is compared as the client would see it.

Nothing here can slow or fail the primary. Every failure of the candidate (no connection, no
answer within SHADOW_TIMEOUT_SECONDS, a status other than 200, an answer that cannot be compared)
is counted in `model_shadow_requests_total{outcome}`, and logged at most once per LOG_SECONDS,
never raised; `stop` waits for the thread no longer than it is told (a daemon thread never holds
up the process's exit). The thread runs `offpath.NICENESS` levels below the worker's: on a core that
serving keeps busy, it gets what serving leaves (and the queue drops the rest), so the
primary's latency stays as it was (tests/containers/test_shadow.py measures it).

The client is one keep-alive HTTP/1.1 connection per worker, on a socket, used by one thread,
its answers parsed by httptools (`Candidate`). httpx (with httpcore, h11, anyio...) is not in
the serving images, and titanic's image is at 149 of its 150 MB budget; an asyncio client would
put the mirror's work on the event loop that serves requests. `http.client` was the first
choice, but it took about 200 us of CPU per mirrored request on the worker, against 45 us for
a socket and a C parser (measured against the candidate's own server): that CPU and the GIL
are the serving worker's, so the primary's latency is where it shows.

The candidate's model version labels the rows compared (`model_shadow_rows_total{model, version,
candidate_version, agreed}`): it is read from the candidate's Open Inference Protocol metadata
(`GET /v2/models/{name}`, with the Authorization of the request being mirrored) on each new
connection, as a new connection may reach another pod; `unknown` when it cannot be read (retried
after VERSION_RETRY_SECONDS), and at most MAX_CANDIDATE_VERSIONS values per worker (then `other`),
so the labels stay bounded whatever the candidate says.

Only the typed REST predict route is mirrored: not the Open Inference Protocol's routes, REST or
gRPC. A mirrored request carries `X-Shadow: 1`, and a pod never mirrors such a request, so a
candidate given the same SHADOW_URL (one ConfigMap for both) does not echo requests in a loop.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools  # type: ignore[import-untyped]  # no type information shipped
from prometheus_client import Counter

from modelserving.outputs import ModelOutput
from modelserving.runtime.metrics import SHADOW_OUTCOMES, Metrics
from modelserving.runtime.offpath import OffPath, Spells
from modelserving.service import ModelService, prediction_list_field
from modelserving.settings import Settings, SettingsError

log = logging.getLogger("modelserving")

SHADOW_HEADER = "x-shadow"  # on mirrored requests: never mirrored again
QUEUE_BYTES = 16 * 1024 * 1024  # bodies and answers held in the queue, at most
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # a longer answer from the candidate is `invalid`
RECEIVE_BYTES = 256 * 1024
CONNECTION_SECONDS = 10.0  # a connection to the candidate is used this long at most
LOG_SECONDS = 10.0  # one warning per spell of failures
VERSION_RETRY_SECONDS = 30.0
MAX_CANDIDATE_VERSIONS = 4
UNKNOWN, OTHER = "unknown", "other"


def check_shadow(service: ModelService[Any, Any], settings: Settings) -> None:
    """SettingsError (one line) if SHADOW_URL is set for a service with nothing to compare by."""
    if settings.shadow_url and service.output is None:
        raise SettingsError(
            f"SHADOW_URL is set, but service '{service.name}' declares no output to compare the "
            "candidate's answers by (ModelService.output)"
        )


def agreement(
    output: ModelOutput, predictions_field: str, ours: str | bytes, theirs: bytes
) -> tuple[int, int]:
    """(rows that agree, rows that do not) between two JSON answers to the same request;
    ValueError if the candidate's cannot be compared with ours."""
    mine = _outputs(ours, predictions_field, output.field)
    try:
        candidates = _outputs(theirs, predictions_field, output.field)
        if len(candidates) != len(mine):
            raise ValueError(f"{len(candidates)} predictions for {len(mine)} rows")
        agreed = sum(1 for value, other in zip(mine, candidates, strict=True) if output.agree(value, other))
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise ValueError(f"the candidate's answer cannot be compared: {error!r}") from None
    return agreed, len(mine) - agreed


def _outputs(answer: str | bytes, predictions_field: str, field: str) -> list[Any]:
    predictions = json.loads(answer)[predictions_field]
    if not isinstance(predictions, list):
        raise TypeError(f"{predictions_field} is not a list")
    return [prediction[field] for prediction in predictions]


@dataclass(frozen=True, slots=True)
class Mirrored:
    """A request to mirror, as the primary got and answered it."""

    body: bytes
    request_id: str
    authorization: str | None
    answer: str  # the primary's JSON answer, as sent

    @property
    def size(self) -> int:
        return len(self.body) + len(self.answer)


@dataclass(frozen=True, slots=True)
class Answer:
    """The candidate's HTTP response: its status, headers (names in lower case) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


class _Reading:
    """httptools' callbacks for one answer: what has arrived of it. The status and whether the
    connection stays open are read in the callbacks: llhttp resets them once a message ends."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.head_done = self.complete = self.keep_alive = False
        self.status = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.head_done = True
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if len(self.body) + len(body) > MAX_ANSWER_BYTES:
            raise ValueError(f"answer longer than {MAX_ANSWER_BYTES} bytes")
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.keep_alive and self.parser.should_keep_alive()


class Candidate:
    """One keep-alive HTTP/1.1 connection to the candidate, used by one thread.

    A request is written whole in one `sendall`; the answer is parsed by httptools (llhttp, the
    parser uvicorn serves with, already in every image). `http.client` did the same exchange for
    about 200 us of CPU against 45 us this way, mostly parsing headers with the `email` package:
    CPU taken from the worker that is serving requests, holding its GIL. A connection is used
    for CONNECTION_SECONDS at most, so that a Service whose pods change (the canary Service,
    from stable's pods to the canary's) is followed within that time.
    """

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        https = parts.scheme == "https"
        self._tls = ssl.create_default_context() if https else None
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if https else 80)
        self._authority = parts.netloc
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self._socket: socket.socket | None = None
        self._opened_at = 0.0
        self.opened = 0  # connections opened so far: a new one may reach another pod

    @property
    def connected(self) -> bool:
        return self._socket is not None

    def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        """The answer within `timeout` in all; TimeoutError, OSError (no connection) or ValueError
        (an answer that is not HTTP, or over MAX_ANSWER_BYTES) otherwise. A kept-alive connection
        the candidate had closed is retried once on a new one."""
        deadline = time.monotonic() + self.timeout
        fields = {"host": self._authority, **headers}
        if body is not None:
            fields["content-length"] = str(len(body))
        if any("\r" in value or "\n" in value for value in fields.values()):
            raise ValueError("a header value holds a line break")
        head = f"{method} {self.prefix}{path} HTTP/1.1\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in fields.items())
        message = (head + "\r\n").encode("latin-1") + (body or b"")
        for retry in (False, True):
            fresh = self._socket is None
            reading = _Reading()
            try:
                connection = self._connect(deadline)
                connection.sendall(message)
                return self._answer(connection, deadline, reading)
            except ConnectionError:  # reset, broken pipe, or closed before answering
                self.close()
                if fresh or retry or reading.head_done or reading.body:
                    raise
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def close_if_old(self) -> None:
        """Close the connection once it has served CONNECTION_SECONDS: the next one may reach
        another pod."""
        if self._socket is not None and time.monotonic() - self._opened_at > CONNECTION_SECONDS:
            self.close()

    def _connect(self, deadline: float) -> socket.socket:
        if self._socket is None:
            connection = socket.create_connection((self._host, self._port), timeout=self._left(deadline))
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                connection = self._tls.wrap_socket(connection, server_hostname=self._host)
            self._socket = connection
            self._opened_at = time.monotonic()
            self.opened += 1
        return self._socket

    @staticmethod
    def _left(deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer in time")
        return left

    def _answer(self, connection: socket.socket, deadline: float, reading: _Reading) -> Answer:
        received = False
        while not reading.complete:
            connection.settimeout(self._left(deadline))
            data = connection.recv(RECEIVE_BYTES)
            if not data:
                if reading.head_done and not reading.keep_alive:
                    break  # a body that runs until the connection closes, now whole
                if received:
                    raise ValueError("the answer ended before it was complete")
                raise ConnectionResetError("the connection closed before an answer")
            received = True
            try:
                reading.parser.feed_data(data)
            except httptools.HttpParserUpgrade as error:
                raise ValueError(f"an upgrade, not an answer: {error}") from None
            except httptools.HttpParserError as error:
                raise ValueError(f"not an HTTP answer: {error}") from None
        if reading.status < 200:
            raise ValueError(f"an interim answer ({reading.status}) to a request that asked for none")
        if not reading.keep_alive or not reading.complete:
            self.close()
        return Answer(reading.status, reading.headers, bytes(reading.body))


class Shadow:
    """One worker's mirror to the candidate at SHADOW_URL: `start(version)` once the model is
    loaded, `offer(...)` after each answer of the typed predict route, `stop(timeout)` at shutdown."""

    def __init__(
        self,
        service: ModelService[Any, Any],
        settings: Settings,
        metrics: Metrics,
        queue_bytes: int = QUEUE_BYTES,
    ) -> None:
        check_shadow(service, settings)
        assert service.output is not None and settings.shadow_url is not None
        self.service = service
        self.output: ModelOutput = service.output
        self.url = settings.shadow_url
        self.sample_rate = settings.shadow_sample_rate
        self.timeout = settings.shadow_timeout_seconds
        self.metrics = metrics
        self._predictions_field, _ = prediction_list_field(service.response_type)
        self._mirrors: OffPath[Mirrored] = OffPath(
            f"{service.name}-shadow",
            settings.shadow_queue_size,
            queue_bytes,
            cost=lambda item: item.size,
            dropped=lambda: self._outcomes["dropped"].inc(),
        )
        self._random = random.Random().random
        self._version = ""
        self._outcomes: dict[str, Counter] = {}
        self._rows: dict[str, tuple[Counter, Counter]] = {}  # candidate version: (agreed, disagreed) counters
        self._candidate: Candidate | None = None
        self._candidate_version = UNKNOWN
        self._learnt_on = 0  # the connection (Candidate.opened) the candidate's version was read on
        self._version_retry_at = 0.0
        self._warnings = Spells(LOG_SECONDS)

    def start(self, version: str) -> None:
        """Start mirroring, for this pod's model `version`: every outcome's series made at 0."""
        if self._mirrors.started:
            return
        self._version = version
        self._outcomes = {
            outcome: self.metrics.shadow_requests.labels(self.service.name, version, outcome)
            for outcome in SHADOW_OUTCOMES
        }
        self._candidate = candidate = Candidate(self.url, self.timeout)
        self._mirrors.start(self._mirror, self._crashed, finished=candidate.close)

    def offer(self, body: bytes, request_id: str, authorization: str | None, answer: str) -> None:
        """On the request path, after the primary answered: mirror a sampled share, never waiting."""
        if self.sample_rate < 1.0 and self._random() >= self.sample_rate:
            return
        if self._mirrors.started:
            self._mirrors.put(Mirrored(body, request_id, authorization, answer))

    @property
    def queued(self) -> int:
        """Requests waiting to be mirrored (for tests and operators' tools)."""
        return self._mirrors.queued

    def stop(self, timeout: float) -> None:
        """Stop mirroring: wait at most `timeout` seconds for the request being mirrored; those
        still queued are dropped (counted)."""
        self._mirrors.stop(timeout)

    def _crashed(self, item: Mirrored, error: Exception) -> None:
        self._outcomes["invalid"].inc()
        log.error("shadow: mirroring failed", exc_info=error, extra={"request_id": item.request_id})

    def _mirror(self, item: Mirrored) -> None:
        """POST `item` to the candidate and compare its answer with ours; count what came of it."""
        assert self._candidate is not None
        candidate_version = self._learn_candidate_version(item.authorization)
        headers = {
            "content-type": "application/json",
            "x-request-id": item.request_id,
            "x-request-timeout-ms": str(max(1, int(self.timeout * 1000))),
            SHADOW_HEADER: "1",
        }
        if item.authorization is not None:
            headers["authorization"] = item.authorization
        try:
            answer = self._candidate.request("POST", self.service.predict_path, item.body, headers)
            if answer.status != 200:
                self._failed("rejected", item, f"status {answer.status}")
                return
            echoed = answer.headers.get("x-request-id")
            if echoed is not None and echoed != item.request_id:
                raise ValueError(f"answered request id {echoed!r}")
            agreed, disagreed = agreement(self.output, self._predictions_field, item.answer, answer.body)
        except TimeoutError:
            self._failed("timeout", item, f"no answer within {self.timeout:g} s")
            return
        except OSError as error:  # no connection (refused, reset, no such host)
            self._failed("unreachable", item, repr(error))
            return
        except ValueError as error:
            self._failed("invalid", item, repr(error))
            return
        agreed_rows, disagreed_rows = self._rows_counters(candidate_version)
        agreed_rows.inc(agreed)
        disagreed_rows.inc(disagreed)
        self._outcomes["compared"].inc()

    def _learn_candidate_version(self, authorization: str | None) -> str:
        """The candidate's model version, read again on each new connection."""
        assert self._candidate is not None
        candidate = self._candidate
        candidate.close_if_old()
        if candidate.connected and candidate.opened == self._learnt_on:
            return self._candidate_version
        if self._candidate_version == UNKNOWN and time.monotonic() < self._version_retry_at:
            return UNKNOWN
        headers = {} if authorization is None else {"authorization": authorization}
        try:
            answer = candidate.request("GET", f"/v2/models/{self.service.name}", None, headers)
            version = str(json.loads(answer.body)["versions"][0])[:64] if answer.status == 200 else None
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            version = None
        self._learnt_on = candidate.opened
        if version is None:
            self._version_retry_at = time.monotonic() + VERSION_RETRY_SECONDS
            self._candidate_version = UNKNOWN
        elif version in self._rows or len(self._rows) < MAX_CANDIDATE_VERSIONS:
            self._candidate_version = version
        else:
            self._candidate_version = OTHER
        return self._candidate_version

    def _rows_counters(self, candidate_version: str) -> tuple[Counter, Counter]:
        counters = self._rows.get(candidate_version)
        if counters is None:  # both series made at once, at 0: a ratio has its denominator from the start
            rows = self.metrics.shadow_rows
            name, version = self.service.name, self._version
            counters = self._rows[candidate_version] = (
                rows.labels(name, version, candidate_version, "true"),
                rows.labels(name, version, candidate_version, "false"),
            )
        return counters

    def _failed(self, outcome: str, item: Mirrored, why: str) -> None:
        self._outcomes[outcome].inc()
        if self._warnings.due():
            log.warning(
                "shadow: the candidate's answer was not compared (%s): %s",
                outcome,
                why,
                extra={"request_id": item.request_id, "shadow_url": self.url, "outcome": outcome},
            )
