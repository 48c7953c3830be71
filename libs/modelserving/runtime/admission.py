"""Admission control: how many inference requests a worker takes on at once, for every transport.

A request is admitted before its body is read (REST: as its headers arrive, in
`modelserving.server.uvicorn_protocol`; gRPC: before its message is parsed) and holds a `Ticket` until it
is answered. Past the limit it is refused at once (503 / UNAVAILABLE) instead of joining a
queue its caller would give up on.

The limit adapts, as an AIMD limit does (Netflix's concurrency-limits, TCP): each request
reports how long it waited, from its admission until the model took it, against its own
budget: until its deadline, which is its caller's timeout or, sooner, `max_queue_seconds`.
A wait past `TARGET_SHARE` of it means the worker holds more than it can serve in time:
the limit shrinks by `BACKOFF`, at most once per round trip (only a request admitted after
the last cut can cut it again, as only it has seen the new limit). A wait within it, while
the limit is in use, grows the limit by one. A request whose deadline passes in the queue
counts as a long wait. So does an event loop running late while requests are refused:
requests not yet read wait in the kernel, unseen, for as long as the loop is behind, and so
do refusals and probes; a lag past `LAG_LIMIT` then shrinks the limit too, and the limit
grows only while the loop keeps time. The
limit follows the model's own speed, so a team adding a slow
model tunes nothing; `ceiling` caps it (`MAX_CONCURRENT_REQUESTS`), and `adaptive=False`
holds it there.

Tickets are admitted and released on the event loop; waits are reported from the inference
thread: a lock keeps the counts whole.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

BACKOFF = 0.9
TARGET_SHARE = 0.5  # of a request's budget it may spend waiting before the limit shrinks
MINIMUM = 1
LAG_LIMIT = 0.003  # seconds the event loop may run late while refusing (refusals wait about that)
INITIAL = 100  # a cold worker's limit: room for a burst until the first waits are measured
RETRY_AFTER_SECONDS = 1


class Refused(Exception):
    """A request the worker does not take on; `status` is its HTTP status (503 or 504)."""

    status = 503

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason  # the metric's label: overloaded, deadline, cancelled, unavailable


class DeadlineExceeded(Refused):
    status = 504


@dataclass(eq=False)
class Ticket:
    """One admitted request: when it arrived, until when its caller waits, whether it left."""

    admitted_at: float
    deadline: float  # time.monotonic() past which nobody wants the answer
    abandoned: bool = False  # the caller has gone (disconnected, cancelled)
    taken: bool = False  # the model took it (it is predicted, or being predicted)
    released: bool = field(default=False, repr=False)

    def expired(self, now: float) -> bool:
        return now >= self.deadline

    def abandon(self) -> None:
        self.abandoned = True

    def limit_to(self, deadline: float) -> None:
        """The caller's own deadline (time.monotonic()), if it comes sooner than the server's."""
        self.deadline = min(self.deadline, deadline)


class AdmissionLimit:
    """An adaptive limit on the requests in flight (admitted, not yet answered)."""

    def __init__(self, *, ceiling: int, max_queue_seconds: float, adaptive: bool = True) -> None:
        self.ceiling = ceiling
        self.max_queue_seconds = max_queue_seconds
        self.adaptive = adaptive
        self.limit = float(min(INITIAL, ceiling) if adaptive else ceiling)
        self.in_flight = 0
        self._last_cut = -math.inf  # when the limit was last cut: requests admitted since may cut it
        self._lag = 0.0  # how late the event loop ran, last measured
        self._refused = False  # a request was refused since the limit was last cut for lag
        self._lock = threading.Lock()
        self._refusals: dict[int, Refused] = {}

    def try_admit(self, now: float | None = None) -> Ticket | None:
        """A ticket for one more request, or None if the worker is at its limit."""
        with self._lock:
            if self.in_flight >= int(self.limit):
                self._refused = True
                return None
            self.in_flight += 1
        admitted_at = time.monotonic() if now is None else now
        return Ticket(admitted_at=admitted_at, deadline=admitted_at + self.max_queue_seconds)

    def full(self) -> bool:
        return self.in_flight >= int(self.limit)

    def release(self, ticket: Ticket) -> None:
        """The request is answered (or refused, or gone); idempotent."""
        with self._lock:
            if not ticket.released:
                ticket.released = True
                self.in_flight -= 1

    def observe(self, ticket: Ticket, taken_at: float) -> None:
        """The model took the request at `taken_at` (or dropped it then, if its deadline passed)."""
        if not self.adaptive:
            return
        waited = taken_at - ticket.admitted_at
        late = waited > (ticket.deadline - ticket.admitted_at) * TARGET_SHARE or ticket.expired(taken_at)
        with self._lock:
            if late:
                if ticket.admitted_at > self._last_cut:
                    self._cut(taken_at)
            elif self.in_flight * 2 >= self.limit and self._lag < LAG_LIMIT / 2:
                # One more per round trip (a limit's worth of requests), as TCP's congestion window grows.
                self.limit = min(self.ceiling, self.limit + 1 / self.limit)

    def lagged(self, now: float, lag: float) -> None:
        """The event loop ran `lag` seconds late just now. Late while requests are refused: the
        admitted ones crowd the loop, and the limit shrinks. (Late with none refused is the
        load's own doing, and refusing some of it would not serve the rest sooner.)"""
        if not self.adaptive:
            return
        with self._lock:
            self._lag = lag
            if lag > LAG_LIMIT and self._refused:
                self._refused = False  # once per spell of refusals that saw this limit
                self._cut(now)

    def _cut(self, now: float) -> None:
        self.limit = max(MINIMUM, self.limit * BACKOFF)
        self._last_cut = now

    def refusal(self, service: str) -> Refused:
        """The refusal of a request past the limit (one object per limit: refusals come by thousands)."""
        limit = int(self.limit)
        cached = self._refusals.get(limit)
        if cached is None:
            message = f"model '{service}' is at its limit of {limit} requests in flight; retry later"
            cached = self._refusals[limit] = Refused(message, "overloaded")
        return cached
