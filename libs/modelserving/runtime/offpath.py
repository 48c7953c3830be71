"""Work done off the request path: a bounded queue the request path only ever `put`s into without
waiting, emptied by one daemon thread that runs below the worker's priority.

The shadow (shadow.py: requests mirrored to a candidate) and payload logging (payloads.py:
requests written as CloudEvents) both hand their work over this way. The request path pays a
`put_nowait` (and a lock, for the budget); a full queue drops the item and says so through
`dropped`, which each user counts as its own outcome. The thread runs NICENESS levels below the
worker's: on a core that serving keeps busy, it gets what serving leaves, and the queue drops
the rest. No exception ends the thread: an item whose work raises is reported to `failed`, and
the next is taken. `stop` waits for the item in hand (or, draining, for the queue to empty) no
longer than it is told, and drops (and reports) what is still queued; a daemon thread never
holds up the process's exit.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
NICENESS = 10  # the thread's, over the worker's


class OffPath(Generic[T]):
    """At most `size` items, and at most `budget` of their `cost` in all (bytes, rows), waiting
    for `work` on a thread named `name`; `dropped()` for each item that could not wait."""

    def __init__(
        self, name: str, size: int, budget: int, cost: Callable[[T], int], dropped: Callable[[], None]
    ) -> None:
        self.name = name
        self._queue: queue.Queue[T | None] = queue.Queue(maxsize=size)
        self._budget = budget
        self._cost = cost
        self._dropped = dropped
        self._queued_cost = 0
        self._cost_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def queued(self) -> int:
        """Items waiting (for tests and operators' tools)."""
        return self._queue.qsize()

    def start(
        self,
        work: Callable[[T], None],
        failed: Callable[[T, Exception], None],
        finished: Callable[[], None] = lambda: None,
    ) -> None:
        """Start the thread: `work(item)` for each item in turn, `failed(item, error)` when it
        raises, `finished()` once, when it stops."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, args=(work, failed, finished), name=self.name, daemon=True
            )
            self._thread.start()

    def put(self, item: T) -> None:
        """On the request path: queue `item`, never waiting; dropped (reported) if it cannot wait."""
        if self._stopping.is_set():
            self._dropped()
            return
        cost = self._cost(item)
        with self._cost_lock:
            if self._queued_cost + cost > self._budget:
                self._dropped()
                return
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self._dropped()
                return
            self._queued_cost += cost

    def stop(self, timeout: float, drain: bool = False) -> None:
        """Stop, within `timeout` seconds: wait for the item being worked on (with `drain`, for
        the queued ones as well, in that time); those still queued then are dropped (reported)."""
        thread = self._thread
        if thread is None or self._stopping.is_set():
            return
        deadline = time.monotonic() + max(0.0, timeout)
        if not drain:
            self._stopping.set()
        # Wakes the thread if it waits, or (draining) ends its work after the queued items. If
        # the queue stays full, the next item it takes once stopping is set stops it.
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=max(0.0, timeout) if drain else 0)
        thread.join(max(0.0, deadline - time.monotonic()))
        self._stopping.set()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._dropped()

    def _run(
        self,
        work: Callable[[T], None],
        failed: Callable[[T, Exception], None],
        finished: Callable[[], None],
    ) -> None:
        # Below the worker's threads in the scheduler: on a busy core, serving comes first.
        with contextlib.suppress(OSError):
            thread = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + NICENESS)
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                with self._cost_lock:
                    self._queued_cost -= self._cost(item)
                if self._stopping.is_set():
                    self._dropped()
                    break
                try:
                    work(item)
                except Exception as error:  # the thread must outlive any bug of its own
                    failed(item, error)
        finally:
            finished()


class Spells:
    """Whether a warning is due: at most one per `seconds`, a line per spell of failures
    rather than one per failure."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last = -seconds

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.seconds:
            return False
        self._last = now
        return True
