"""ASGI middleware every service runs behind: request ids, access logs, body-size limit.

Written as plain ASGI (not BaseHTTPMiddleware) so it adds no task or buffering
per request and can refuse an oversize body before reading it.
"""

import contextlib
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserving import metrics
from modelserving.errors import error_response
from modelserving.logs import request_id

access_log = logging.getLogger("modelserving.access")

_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    """Tags each request with an X-Request-ID, logs it as JSON, and caps its body size."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        offered = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = offered if _VALID_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        token = request_id.set(rid)
        metrics.IN_FLIGHT.inc()
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

        received = 0
        too_large = False

        async def receive_within_limit() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request" and not too_large:
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise BodyTooLarge()
            return message

        async def send_unless_too_large(message: Message) -> None:
            # Whatever the app answers to a body it could not finish reading is replaced by a 413.
            if not too_large:
                await send_with_id(message)

        try:
            declared = _declared_length(headers)
            if declared is None:
                await error_response(400, "invalid Content-Length header")(scope, receive, send_with_id)
            elif declared > self.max_body_bytes:
                await self._too_large(scope, receive, send_with_id)
            else:
                with contextlib.suppress(BodyTooLarge):
                    await self.app(scope, receive_within_limit, send_unless_too_large)
                if too_large and not response_started:
                    await self._too_large(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            metrics.IN_FLIGHT.dec()
            metrics.observe_request(scope, status, elapsed)
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

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, f"request body exceeds the limit of {self.max_body_bytes} bytes")
        response.headers["connection"] = "close"
        await response(scope, receive, send)


def _declared_length(headers: dict[bytes, bytes]) -> int | None:
    """The Content-Length as an int (0 when absent), or None when it is malformed."""
    raw = headers.get(b"content-length")
    if raw is None:
        return 0
    return int(raw) if raw.isdigit() and len(raw) < 19 else None
