"""uvicorn's httptools HTTP protocol, with a deadline for each request's headers and a count
of the requests the process is answering.

uvicorn closes idle keep-alive connections, but not one whose client sends its
request headers a byte at a time ("slowloris"): each such connection is held
open for as long as the client likes, and enough of them exhaust the server's
file descriptors. Here every request gets `HEADER_TIMEOUT_SECONDS` to finish its
headers, counted from the connection (or from its first byte, on a reused
connection); then the connection is closed. Other clients are served meanwhile,
as ever. (Body uploads are bounded by `MAX_BODY_BYTES`, not by time.)

`requests_answering()` counts, across connections, requests whose headers have
arrived and whose response has not finished, including those not yet running:
the micro-batcher predicts a request at once when it is the only one, since no
other could join its batch. (Outside this server, e.g. under a test client, it is 0.)
"""

from __future__ import annotations

import asyncio
from functools import cache

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelserving.settings import load_settings

_answering = 0


def requests_answering() -> int:
    """Requests this process has read the headers of and not finished answering."""
    return _answering


@cache
def header_timeout() -> float:
    """The worker's setting (validated by `serve` before any worker starts)."""
    return load_settings().header_timeout_seconds


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; `uvicorn.run(..., http=HeaderDeadlineProtocol)`."""

    _header_deadline: asyncio.TimerHandle | None = None
    _answering_here = 0  # this connection's share of `requests_answering()` (pipelining: several)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:  # the next request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._count(1)
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        if self._answering_here:  # not already uncounted by connection_lost
            self._count(-1)
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._count(-self._answering_here)  # requests the client left before their response ended
        super().connection_lost(exc)

    def _count(self, change: int) -> None:
        global _answering
        self._answering_here += change
        _answering += change

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
