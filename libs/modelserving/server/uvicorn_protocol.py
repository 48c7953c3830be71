"""uvicorn's httptools HTTP protocol with the guards a model worker needs before its app runs.

This is the one place the project relies on uvicorn's internals, for what uvicorn has no
setting for. Written against uvicorn `UVICORN_VERSION`; `test_uvicorn_protocol.py` fails on any
other version, so that an upgrade re-reads this class first.

- **A deadline for each request's headers.** uvicorn closes idle keep-alive connections,
  but not one whose client sends its request headers a byte at a time ("slowloris"): such
  a connection stays open as long as the client likes, and enough of them exhaust the
  server's file descriptors. Here every request gets `HEADER_TIMEOUT_SECONDS` to finish
  its headers, counted from the connection (or from its first byte, on a reused
  connection); then the connection is closed. Bodies have their own deadline, in
  `middleware.py` (plain ASGI).
- **Admission as the headers arrive.** Under overload most requests must be refused, and a
  refusal must cost far less than an answer, or refusing takes the CPU the answers need.
  The app's gate (`ADMISSION_GATE_STATE`) sees each request's scope, path and headers
  before any task is made for it; when it returns a response, that response is written at
  once: no task, no ASGI call, no body parsed (its bytes are read and dropped), and the
  connection is kept for the next request. A request it admits carries its `TICKET` in the
  scope.
- **The time the headers arrived** (`ARRIVED`, in the scope), from which a caller's own
  timeout counts; and **hooks for the end of a request**: a callable at `ON_DISCONNECT` in
  the scope is called if the connection drops before the response is complete, so that a
  request nobody waits for is never predicted (`ON_COMPLETE`, which `middleware.py` calls
  once the response is sent, is the other end).

The app hands its settings to the protocol through the ASGI lifespan state: the app's
lifespan yields `{HEADER_TIMEOUT_STATE: seconds, ADMISSION_GATE_STATE: gate}` and uvicorn
hands that state to every connection. Under another server, or without this protocol,
there is no header deadline and admission happens in the app, after the body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelserving.http.scope import (
    ADMISSION_GATE_STATE,
    ARRIVED,
    HEADER_TIMEOUT_STATE,
    ON_DISCONNECT,
    Gate,
)

UVICORN_VERSION = "0.54.0"


class _Refused:
    """The request in progress was answered by an early refusal: its body is to be dropped.
    (It stands where uvicorn keeps the request's cycle, with the same attributes it reads.)"""

    response_complete = True
    disconnected = False
    keep_alive = True

    class message_event:  # (uvicorn's attribute)
        @staticmethod
        def set() -> None:
            return None


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the guards above; `uvicorn.run(..., http=GuardedHttpProtocol)`."""

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
        self.scope[ARRIVED] = time.monotonic()  # type: ignore[literal-required]
        gate: Gate | None = self.app_state.get(ADMISSION_GATE_STATE)
        # Only when no earlier request on this connection is still being answered (pipelining).
        if gate is not None and (self.cycle is None or self.cycle.response_complete):
            # A client that waits for "100 Continue" may or may not send the body it announced:
            # its connection cannot be reused.
            keep_alive = (
                self.parser.should_keep_alive()
                and self.parser.get_http_version() == "1.1"
                and not self.expect_100_continue
            )
            path = self.url.partition(b"?")[0]
            response = gate(self.scope, path, self.headers, keep_alive)  # type: ignore[arg-type]
            if response is not None:
                self._answer_early(response, keep_alive)
                return
        super().on_headers_complete()

    def _answer_early(self, response: bytes, keep_alive: bool) -> None:
        """What uvicorn does when a response is complete, for a response written here."""
        if self.cycle is None:
            self.cycle = _Refused  # type: ignore[assignment]
        self.server_state.total_requests += 1
        self.transport.write(response)
        if not keep_alive:
            self.transport.close()
        elif self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.cycle is not None and not self.cycle.response_complete and self.scope:
            leave: Callable[[], object] | None = self.scope.get(ON_DISCONNECT)  # type: ignore[assignment]
            if leave is not None:
                leave()
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
