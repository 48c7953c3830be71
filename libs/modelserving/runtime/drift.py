"""Input drift: live inputs counted into the bins of the model card's reference distribution.

At load, `InputDrift` makes every series of `model_input_rows_total{model,version,feature,bin}`
at 0, one per bin of each feature the card's reference names (formats/reference.py: quantile
ranges for numbers, the categories training kept for the rest, `other`, `missing`), and sets
`model_input_reference_ratio{model,version,feature,bin}` to the reference's share of each bin;
`model_output_reference_ratio{model,version,bin}` likewise for the scores, when the card's score
bins are the service's declared output's (those of `model_outputs_total`). Labels come from the
card alone, so they stay a finite set whatever clients send. Prometheus compares the two by
their population stability index (`model:input_psi:1h`, and the `ModelInputDrift` alert).

Counting is off the request path. A predicted request hands its typed rows over with `offer`:
a check of the backlog's size and a `deque.append` of the list it already holds. One daemon
thread per worker, NICENESS levels below the worker's, wakes every INTERVAL_SECONDS, takes
every list handed over since, reads the watched fields of all their rows at once
(`operator.itemgetter` on each pydantic row's `__dict__`, the columns transposed by `zip`),
bins each feature's column with NumPy (`searchsorted` for numbers; categories looked up by
`map`, in C; `bincount`) and increments each bin's counter once per batch. The backlog holds
at most `max_rows` rows: past that, a request's rows are dropped, never queued, and counted in
`model_input_rows_dropped_total{model,version}`, so memory stays bounded when the thread falls
behind (a saturated core gives it what serving leaves).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import operator
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from prometheus_client import Counter
from pydantic import BaseModel

from modelserving.formats.artifacts import ModelCard, ModelLoadError
from modelserving.formats.reference import Reference
from modelserving.outputs import ModelOutput
from modelserving.runtime.metrics import Metrics

log = logging.getLogger("modelserving")

MAX_BACKLOG_ROWS = 10_000  # rows handed over and not yet counted, at most
INTERVAL_SECONDS = 0.5  # how often the thread counts what was handed over
NICENESS = 10  # the counting thread's, over the worker's
LOG_SECONDS = 60.0


def check_reference(card: ModelCard, item_type: type[BaseModel]) -> None:
    """ModelLoadError (one line) if the card's reference watches a field the service's rows
    do not have (a card trained for another schema): start-up stops rather than count nothing."""
    if card.reference is None:
        return
    unknown = [name for name in card.reference.features if name not in item_type.model_fields]
    if unknown:
        raise ModelLoadError(
            f"the model card's reference distribution names fields {item_type.__name__} does not "
            f"have: {', '.join(unknown)}"
        )


class InputDrift:
    """Counts one model version's live inputs into its card's reference bins, on a thread of its
    own; `offer(rows)` is all a request does."""

    def __init__(
        self,
        metrics: Metrics,
        model: str,
        version: str,
        reference: Reference,
        output: ModelOutput | None = None,
        *,
        max_rows: int = MAX_BACKLOG_ROWS,
        interval: float = INTERVAL_SECONDS,
    ) -> None:
        self.model, self.version = model, version
        self._bins = list(reference.features.values())
        names = list(reference.features)
        self._getter = operator.attrgetter(*names)
        self._fields = operator.itemgetter(*names)  # from a pydantic row's __dict__: twice as fast
        self._width = len(names)
        self._children: list[list[Counter]] = []
        for name, bins in reference.features.items():
            self._children.append([metrics.input_rows.labels(model, version, name, b) for b in bins.bins])
            for label, share in bins.shares.items():
                metrics.input_reference.labels(model, version, name, label).set(share)
        if reference.scores is not None and output is not None:
            if reference.scores.bins == tuple(output.bins):
                for label, share in reference.scores.shares.items():
                    metrics.output_reference.labels(model, version, label).set(share)
            else:
                log.warning(
                    "the model card's score bins are not the service's output bins: "
                    "model_output_reference_ratio is not exported",
                    extra={"model": model, "version": version},
                )
        self._dropped = metrics.input_dropped.labels(model, version)
        self._max_rows = max_rows
        self._interval = interval
        self._backlog: collections.deque[Sequence[Any]] = collections.deque()
        # Rows handed over (written by `offer` alone, on the event loop) and rows taken off the
        # backlog (by the thread alone): their difference is the backlog, with no lock.
        self._offered = 0
        self._taken = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_log = -LOG_SECONDS

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"{self.model}-drift", daemon=True)
            self._thread.start()

    def offer(self, rows: Sequence[Any]) -> None:
        """On the request path, once `rows` are predicted: hand them over, or drop them (counted)
        if the backlog is full. Called from one thread only (the worker's event loop)."""
        count = len(rows)
        if self._offered - self._taken + count > self._max_rows:
            self._dropped.inc(count)
            return
        self._offered += count
        self._backlog.append(rows)

    @property
    def backlog(self) -> int:
        """Rows handed over and not yet counted."""
        return self._offered - self._taken

    def flush(self, timeout: float = 5.0) -> bool:
        """Wake the thread and wait until every row handed over so far is counted (tests and
        operators' tools); False if that took longer than `timeout`."""
        target = self._offered
        deadline = time.monotonic() + timeout
        while self._taken < target:
            if time.monotonic() >= deadline or self._thread is None or not self._thread.is_alive():
                return False
            self._wake.set()
            time.sleep(0.001)
        return True

    def stop(self, timeout: float) -> None:
        """Count what is left, waiting at most `timeout` seconds, and stop the thread."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(max(0.0, timeout))

    def count(self, rows: Sequence[Any]) -> None:
        """Bin `rows` and increment each bin's counter by its rows (the thread's work, in one call)."""
        if not rows:
            return
        try:
            values: Any = list(map(self._fields, map(vars, rows)))
        except (TypeError, KeyError):  # rows that keep their fields elsewhere
            values = list(map(self._getter, rows))
        # One tuple per feature (zip transposes the rows' tuples), or the one feature's values.
        columns = zip(*values, strict=True) if self._width > 1 else (tuple(values),)
        for bins, children, column in zip(self._bins, self._children, columns, strict=True):
            counts = np.bincount(bins.indices(column), minlength=len(children))
            for index in np.flatnonzero(counts).tolist():
                children[index].inc(int(counts[index]))

    def _run(self) -> None:
        # Below the worker's threads in the scheduler: on a busy core, serving comes first.
        with contextlib.suppress(OSError):
            thread = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + NICENESS)
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            stopping = self._stopping.is_set()
            self._drain()
            if stopping:
                break

    def _drain(self) -> None:
        batches: list[Sequence[Any]] = []
        with contextlib.suppress(IndexError):
            while True:
                batches.append(self._backlog.popleft())
        if not batches:
            return
        rows = list(itertools.chain.from_iterable(batches))
        try:
            self.count(rows)
        except Exception:  # the counter must outlive any bug of its own: those rows are dropped
            self._dropped.inc(len(rows))
            now = time.monotonic()
            if now - self._last_log >= LOG_SECONDS:
                self._last_log = now
                log.exception("input drift: counting failed", extra={"model": self.model})
        finally:
            self._taken += len(rows)
