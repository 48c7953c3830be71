"""uvicorn's httptools HTTP protocol with a deadline for each request's headers.

This is the one place the project relies on uvicorn's internals, for the one thing
uvicorn has no setting for. uvicorn closes idle keep-alive connections, but not one
whose client sends its request headers a byte at a time ("slowloris"): such a
connection stays open as long as the client likes, and enough of them exhaust the
server's file descriptors. Here every request gets `HEADER_TIMEOUT_SECONDS` to finish
its headers, counted from the connection (or from its first byte, on a reused
connection); then the connection is closed. Other clients are served meanwhile.
Bodies have their own deadline, in `middleware.py` (plain ASGI).

The deadline comes from the app's settings through the ASGI lifespan state: the
app's lifespan yields `{HEADER_TIMEOUT_STATE: seconds}` and uvicorn hands that state
to every connection. Under another server, or without this protocol, there is no
header deadline. Written against uvicorn `UVICORN_VERSION`; `test_protocol.py`
fails on any other version, so that an upgrade re-reads this class first.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

UVICORN_VERSION = "0.54.0"
HEADER_TIMEOUT_STATE = "modelserving.header_timeout_seconds"


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
        seconds = self.app_state.get(HEADER_TIMEOUT_STATE)
        if seconds:
            self._header_deadline = self.loop.call_later(seconds, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
