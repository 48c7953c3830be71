"""Admission control over REST: the typed and v2 inference routes take requests on through here.

Under the project's HTTP protocol (`modelserving.server.uvicorn_protocol`), `AdmissionGate` admits each
inference request as its headers arrive, before its body is read or any task made for it:
past the limit, it writes the whole 503 at once, in the route's own error format, for a few
microseconds of work. An admitted request holds a `Ticket` from then on, until its response
is complete (`ON_COMPLETE`, called by `middleware.py`). Its deadline is the caller's
`X-Request-Timeout-Ms`, counted from the arrival of its headers, or the server's
MAX_QUEUE_SECONDS; its body must arrive before it (else 408), so a client trickling its body
holds a ticket no longer than a queued request may wait. If the connection drops first, the
ticket is abandoned (`ON_DISCONNECT`), and the request never predicted.

Under another server, `admitted()` takes the ticket in the route instead, after the body.
Refusals there are `admission.Refused`, which each API's error handler words in its own
format: 503 with `Retry-After` when the worker is at its limit or the model is not
responding, 504 when the deadline passes before the model takes the request.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import MutableMapping, Sequence
from typing import Any

from fastapi import Request
from starlette.exceptions import HTTPException

from modelserving.http.scope import ARRIVED, ON_COMPLETE, ON_DISCONNECT, TICKET
from modelserving.runtime.admission import RETRY_AFTER_SECONDS, Refused, Ticket
from modelserving.runtime.dataplane import DataPlane
from modelserving.runtime.logs import valid_request_id

TIMEOUT_HEADER = "x-request-timeout-ms"
MAX_TIMEOUT_MS = 3_600_000


def timeout_seconds(value: str) -> float:
    """The header's milliseconds as seconds; 400 naming the header unless 1 to MAX_TIMEOUT_MS digits."""
    if not (value.isascii() and value.isdigit() and len(value) <= 7 and 0 < int(value) <= MAX_TIMEOUT_MS):
        raise HTTPException(
            400, f"X-Request-Timeout-Ms must be a whole number of milliseconds, 1 to {MAX_TIMEOUT_MS}"
        )
    return int(value) / 1000


def hold(scope: MutableMapping[str, Any], plane: DataPlane, ticket: Ticket) -> None:
    """Keep `ticket` with its request: released when the response is complete, abandoned if
    the caller leaves first."""
    scope[TICKET] = ticket
    scope[ON_DISCONNECT] = ticket.abandon
    scope[ON_COMPLETE] = functools.partial(plane.release, ticket)


class admitted:  # (a context manager, named for how it reads: `with admitted(...)`)
    """The request's ticket, the gate's or taken now, released on leaving; `Refused` (503) or
    HTTPException (400) instead. A class, not a generator: it is on every inference's path."""

    __slots__ = ("_plane", "_ticket")

    def __init__(self, request: Request, plane: DataPlane) -> None:
        header = request.headers.get(TIMEOUT_HEADER)
        timeout = None if header is None else timeout_seconds(header)
        ticket: Ticket | None = request.scope.get(TICKET)
        if ticket is None:
            ticket = plane.admit(now=request.scope.get(ARRIVED))
            hold(request.scope, plane, ticket)
        if timeout is not None:
            ticket.limit_to(ticket.admitted_at + timeout)
        self._plane, self._ticket = plane, ticket

    def __enter__(self) -> Ticket:
        return self._ticket

    def __exit__(self, *exception: object) -> None:
        self._plane.release(self._ticket)


class AdmissionGate:
    """The HTTP protocol's gate (`protocol.ADMISSION_GATE_STATE`) for one app's inference routes:
    admits a request to one of them (holding its ticket in the scope), or returns its whole 503
    response, in that route's error format. Any other request passes untouched."""

    V2_PREFIX, V2_SUFFIX = b"/v2/models/", b"/infer"

    def __init__(self, plane: DataPlane, predict_path: str, root_path: str) -> None:
        self.plane = plane
        self.root = root_path.encode()
        self.typed_route = predict_path
        self.typed_paths = {predict_path.encode(), (root_path + predict_path).encode()}
        # What a refusal counts, bound once: http_requests_total by route.
        self._counted = {
            route: plane.metrics.requests.labels("POST", route, "503")
            for route in (
                predict_path,
                "/v2/models/{model_name}/infer",
                "/v2/models/{model_name}/versions/{model_version}/infer",
            )
        }
        self._bodies: dict[tuple[Refused, bool], bytes] = {}  # a refusal's body, request id left out

    def __call__(
        self, scope: dict[str, Any], raw_path: bytes, headers: Sequence[tuple[bytes, bytes]], keep_alive: bool
    ) -> bytes | None:
        route = self._route(raw_path)
        if route is None:
            return None
        ticket = self.plane.try_admit(now=scope[ARRIVED])
        if isinstance(ticket, Refused):
            return self._refusal(route, ticket, headers, keep_alive)
        hold(scope, self.plane, ticket)
        for name, value in headers:
            if name == b"x-request-timeout-ms":
                with contextlib.suppress(HTTPException):  # a malformed one is the route's 400 to give
                    ticket.limit_to(ticket.admitted_at + timeout_seconds(value.decode("latin-1")))
        return None

    def _refusal(
        self, route: str, refusal: Refused, headers: Sequence[tuple[bytes, bytes]], keep_alive: bool
    ) -> bytes:
        """The whole response, made of parts rendered once per refusal: it is on the hot path."""
        offered = next((value for name, value in headers if name == b"x-request-id"), b"")
        rid = valid_request_id(offered.decode("latin-1")).encode()
        typed = route == self.typed_route
        body = self._bodies.get((refusal, typed))
        if body is None:
            body = self._bodies[(refusal, typed)] = self._body(refusal, typed)
        content = body % {b"rid": rid} if typed else body
        self._counted[route].inc()
        return b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n" + (
            b"content-length: %d\r\nretry-after: %d\r\nx-request-id: %s\r\n%s\r\n%s"
            % (
                len(content),
                RETRY_AFTER_SECONDS,
                rid,
                b"" if keep_alive else b"connection: close\r\n",
                content,
            )
        )

    @staticmethod
    def _body(refusal: Refused, typed: bool) -> bytes:
        """The protocol's `{"error": ...}`, or for the typed route the library's error body with
        a `%(rid)s` slot for the request id."""
        if not typed:
            return json.dumps({"error": refusal.message}).encode()
        fields = {"error": refusal.message, "status": refusal.status, "request_id": "<rid>", "fields": []}
        return json.dumps(fields).encode().replace(b"%", b"%%").replace(b'"<rid>"', b'"%(rid)s"')

    def _route(self, raw_path: bytes) -> str | None:
        """The route template an inference request's path matches, or None."""
        if raw_path in self.typed_paths:
            return self.typed_route
        path = raw_path[len(self.root) :] if self.root and raw_path.startswith(self.root + b"/") else raw_path
        if not (path.startswith(self.V2_PREFIX) and path.endswith(self.V2_SUFFIX)):
            return None
        name_and_version = path[len(self.V2_PREFIX) : -len(self.V2_SUFFIX)]
        if b"/" not in name_and_version:
            return "/v2/models/{model_name}/infer"
        if name_and_version.count(b"/") == 2 and b"/versions/" in name_and_version:
            return "/v2/models/{model_name}/versions/{model_version}/infer"
        return None
