"""ASGI middleware every service runs behind: request ids, access logs, body limits.

Written as plain ASGI (not BaseHTTPMiddleware) so it adds no task or buffering
per request and can refuse an oversize body before reading it. A body must arrive
within `body_timeout_seconds` of its headers, and before the deadline of an inference
request admitted as its headers arrived (else 408), and a response sent before
the body was read whole (a 401, say) closes the connection, so a client trickling
its body cannot hold a connection open.
"""

import asyncio
import contextlib
import logging
import time

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserving.http.errors import error_response
from modelserving.http.scope import ON_COMPLETE, TICKET
from modelserving.runtime.logs import ACCESS_LOGGER, request_id, valid_request_id
from modelserving.runtime.metrics import Metrics
from modelserving.runtime.tracing import Tracing

access_log = logging.getLogger(ACCESS_LOGGER)

UNMATCHED_ROUTE = "<unmatched>"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_label(scope: Scope) -> str:
    """The template of the route that handled the request, or one shared label for unknown paths."""
    route = scope.get("route")
    return getattr(route, "path", None) or UNMATCHED_ROUTE


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "OTHER"


class BodyRefused(Exception):
    """The body is too large or too slow: the middleware answers instead of the app."""


class RequestContextMiddleware:
    """Tags each request with an X-Request-ID, logs it as JSON, and bounds its body's size and time."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        max_body_bytes: int,
        body_timeout_seconds: float,
        tracing: Tracing | None = None,
    ) -> None:
        self.app = app
        self.tracing = tracing  # the request id goes on the request's span
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.body_timeout_seconds = body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        rid = valid_request_id(headers.get(b"x-request-id", b"").decode("latin-1"))
        token = request_id.set(rid)
        if self.tracing:
            self.tracing.tag_request()
        self.metrics.in_flight.inc()
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        declared = _declared_length(headers)
        body_deadline = asyncio.get_running_loop().time() + self.body_timeout_seconds
        ticket = scope.get(TICKET)  # admitted as its headers arrived: its body must beat its deadline
        if ticket is not None and ticket.deadline < body_deadline:
            body_deadline = ticket.deadline
        body_done = not declared and b"transfer-encoding" not in headers
        received = 0
        refusal: JSONResponse | None = None  # answered instead of the app's response

        async def receive_within_limits() -> Message:
            nonlocal received, body_done, refusal
            try:
                async with asyncio.timeout_at(body_deadline):
                    message = await receive()
            except TimeoutError:
                refusal = _closing(408, "request body not received in time")
                raise BodyRefused() from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_body_bytes:
                    refusal = self._too_large()
                    raise BodyRefused()
            return message

        async def send_unless_refused(message: Message) -> None:
            if refusal is not None:
                return
            if message["type"] == "http.response.start" and not body_done:
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send_with_id(message)

        try:
            if declared is None:
                await error_response(400, "invalid Content-Length header")(scope, receive, send_with_id)
            elif declared > self.max_body_bytes:
                await self._too_large()(scope, receive, send_with_id)
            else:
                with contextlib.suppress(BodyRefused):
                    await self.app(scope, receive_within_limits, send_unless_refused)
                if refusal is not None and not response_started:
                    await refusal(scope, receive, send_with_id)
        finally:
            completed = scope.get(ON_COMPLETE)
            if completed is not None:
                completed()
            elapsed = time.perf_counter() - started
            self.metrics.in_flight.dec()
            self.metrics.observe_request(method_label(scope["method"]), route_label(scope), status, elapsed)
            access_log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "client": (scope.get("client") or ("", 0))[0],
                    "request_id": rid,
                },
            )
            request_id.reset(token)

    def _too_large(self) -> JSONResponse:
        return _closing(413, f"request body exceeds the limit of {self.max_body_bytes} bytes")


def _closing(status: int, message: str) -> JSONResponse:
    """An error response that closes the connection (the rest of the body is never read)."""
    response = error_response(status, message)
    response.headers["connection"] = "close"
    return response


def _declared_length(headers: dict[bytes, bytes]) -> int | None:
    """The Content-Length as an int (0 when absent), or None when it is malformed."""
    raw = headers.get(b"content-length")
    if raw is None:
        return 0
    return int(raw) if raw.isdigit() and len(raw) < 19 else None
