"""uvicorn's httptools HTTP protocol, with a deadline for each request's headers.

uvicorn closes idle keep-alive connections, but not one whose client sends its
request headers a byte at a time ("slowloris"): each such connection is held
open for as long as the client likes, and enough of them exhaust the server's
file descriptors. Here every request gets `HEADER_TIMEOUT_SECONDS` to finish its
headers, counted from the connection (or from its first byte, on a reused
connection); then the connection is closed. Other clients are served meanwhile,
as ever. (Body uploads are bounded by `MAX_BODY_BYTES`, not by time.)
"""

from __future__ import annotations

import asyncio
from functools import cache

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelserving.settings import load_settings


@cache
def header_timeout() -> float:
    """The worker's setting (validated by `serve` before any worker starts)."""
    return load_settings().header_timeout_seconds


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; `uvicorn.run(..., http=HeaderDeadlineProtocol)`."""

    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:  # the next request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_deadline = self.loop.call_later(header_timeout(), self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
