"""Admission control over REST: the typed and v2 inference routes take a request on through here.

A route reads the body's bytes, then `admitted(request, plane)` takes a ticket (a request
trickling its body holds none) and sets the request's deadline: the caller's
`X-Request-Timeout-Ms`, counted from the arrival of its headers, or the server's
MAX_QUEUE_SECONDS. A refusal is an `admission.Refused` that each API's error handler words in
its own format: 503 with `Retry-After` when the worker is at its limit or the model is not
responding, 504 when the deadline passes before the model takes the request. Most refusals
under overload happen earlier and cost less, as the headers arrive (`modelserving.protocol`).

The ticket travels in the ASGI scope (`TICKET`), where the HTTP protocol finds it if the
connection drops: the request is then abandoned, and never predicted.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Request
from starlette.exceptions import HTTPException

from modelserving import metrics
from modelserving.admission import RETRY_AFTER_SECONDS, Ticket
from modelserving.dataplane import DataPlane
from modelserving.middleware import valid_request_id
from modelserving.protocol import ARRIVED, ON_DISCONNECT

TICKET = "modelserving.ticket"  # the request's Ticket, in its ASGI scope
TIMEOUT_HEADER = "x-request-timeout-ms"
MAX_TIMEOUT_MS = 3_600_000


def timeout_seconds(value: str) -> float:
    """The header's milliseconds as seconds; 400 naming the header unless 1 to MAX_TIMEOUT_MS digits."""
    if not (value.isascii() and value.isdigit() and len(value) <= 7 and 0 < int(value) <= MAX_TIMEOUT_MS):
        raise HTTPException(
            400, f"X-Request-Timeout-Ms must be a whole number of milliseconds, 1 to {MAX_TIMEOUT_MS}"
        )
    return int(value) / 1000


@asynccontextmanager
async def admitted(request: Request, plane: DataPlane) -> AsyncIterator[Ticket]:
    """The request's ticket, held for the block; `Refused` (503) or HTTPException (400) instead."""
    header = request.headers.get(TIMEOUT_HEADER)
    timeout = None if header is None else timeout_seconds(header)
    ticket = plane.admit()
    if timeout is not None:
        ticket.limit_to(request.scope.get(ARRIVED, ticket.admitted_at) + timeout)
    request.scope[TICKET] = ticket
    request.scope[ON_DISCONNECT] = ticket.abandon  # the HTTP protocol calls it if the caller leaves
    try:
        yield ticket
    finally:
        plane.release(ticket)


class EarlyRefusal:
    """The HTTP protocol's early refusal (`protocol.EARLY_REFUSAL_STATE`) for one app's inference
    routes: the whole 503 response for a request to one of them while the data plane refuses
    work, in that route's error format; None for any other request, or when work is taken."""

    V2_PREFIX, V2_SUFFIX = b"/v2/models/", b"/infer"

    def __init__(self, plane: DataPlane, predict_path: str, root_path: str) -> None:
        self.plane = plane
        self.root = root_path.encode()
        self.typed_paths = {predict_path.encode(), (root_path + predict_path).encode()}
        # What a refusal counts, bound once: http_requests_total and its duration, by route.
        self._counted = {
            route: (
                metrics.REQUESTS.labels("POST", route, "503"),
                metrics.REQUEST_SECONDS.labels("POST", route, "503"),
            )
            for route in (
                predict_path,
                "/v2/models/{model_name}/infer",
                "/v2/models/{model_name}/versions/{model_version}/infer",
            )
        }
        self._typed_route = predict_path

    def __call__(self, raw_path: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool) -> bytes | None:
        route = self._route(raw_path)
        if route is None:
            return None
        refusal = self.plane.refusal()
        if refusal is None:
            return None
        offered = next((value for name, value in headers if name == b"x-request-id"), b"")
        rid = valid_request_id(offered.decode("latin-1"))
        body: dict[str, object] = {"error": refusal.message}
        if route == self._typed_route:
            body.update(status=refusal.status, request_id=rid, fields=[])
        content = json.dumps(body).encode()
        requests, seconds = self._counted[route]
        requests.inc()
        seconds.observe(0.0)
        return b"".join(
            (
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n",
                b"content-length: %d\r\nretry-after: %d\r\nx-request-id: %s\r\n"
                % (len(content), RETRY_AFTER_SECONDS, rid.encode()),
                b"" if keep_alive else b"connection: close\r\n",
                b"\r\n",
                content,
            )
        )

    def _route(self, raw_path: bytes) -> str | None:
        """The route template an inference request's path matches, or None."""
        if raw_path in self.typed_paths:
            return self._typed_route
        path = raw_path[len(self.root) :] if self.root and raw_path.startswith(self.root + b"/") else raw_path
        if not (path.startswith(self.V2_PREFIX) and path.endswith(self.V2_SUFFIX)):
            return None
        name_and_version = path[len(self.V2_PREFIX) : -len(self.V2_SUFFIX)]
        if b"/" not in name_and_version:
            return "/v2/models/{model_name}/infer"
        if name_and_version.count(b"/") == 2 and b"/versions/" in name_and_version:
            return "/v2/models/{model_name}/versions/{model_version}/infer"
        return None
