"""Adaptive batching off the event loop: one inference thread per worker, fed by a queue.

A request puts its rows on the queue and awaits its result; the event loop is free
meanwhile for probes, health checks, metrics and parsing other requests, however long
the model takes. The requests of one turn of the event loop reach the queue together,
at the end of that turn: woken for each, the inference thread would take them one by
one, each taking the GIL from the loop mid-turn. The inference thread takes everything
queued (up to `max_rows` rows) as one batch, predicts it in one call, and hands each
request its own slice of the response. Requests that arrive while a batch runs form the next one, so batches
grow with load and the model's fixed per-call cost is paid once per batch, without
anyone having to know whether a request is alone: Triton's dynamic batcher, and
MLServer's adaptive batching, with no queue delay by default. `max_wait` > 0 holds a
batch that long for more rows.

With batching off (`batching=False`) each request is a batch of its own, still on the
inference thread. An exception fails only the requests of its batch. `start()` and
`stop()` bracket the thread's life (the app's lifespan).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class _Pending:
    rows: Sequence[Any]
    future: asyncio.Future[BaseModel]
    loop: asyncio.AbstractEventLoop


class InferenceQueue:
    """`await infer(rows)`: the response of `predict_rows`, called on this queue's own thread."""

    def __init__(
        self,
        predict_rows: Callable[[list[Any]], BaseModel],
        predictions_field: str,
        *,
        max_rows: int,
        max_wait: float = 0.0,
        batching: bool = True,
        name: str = "inference",
    ) -> None:
        self._predict_rows = predict_rows
        self._field = predictions_field
        self._max_rows = max_rows
        self._max_wait = max_wait
        self._batching = batching
        self._pending: deque[_Pending] = deque()
        self._pending_rows = 0
        self._this_turn: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        self._changed = threading.Condition()
        self._stopping = False
        self._finished = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    async def infer(self, rows: Sequence[Any]) -> BaseModel:
        loop = asyncio.get_running_loop()
        if self._stopping:
            raise RuntimeError("the inference queue is stopped")
        future: asyncio.Future[BaseModel] = loop.create_future()
        this_turn = self._this_turn.get(loop)
        if this_turn is None:
            this_turn = self._this_turn[loop] = []
            loop.call_soon(self._enqueue, loop)
        this_turn.append(_Pending(rows, future, loop))
        return await future

    def _enqueue(self, loop: asyncio.AbstractEventLoop) -> None:
        """At the end of a turn of `loop`: its requests onto the queue, with one wake-up."""
        this_turn = self._this_turn.pop(loop)
        with self._changed:
            if self._finished:  # stopped during this turn: nothing will take them
                _set_outcomes(
                    [(pending, RuntimeError("the inference queue is stopped")) for pending in this_turn]
                )
                return
            self._pending.extend(this_turn)
            self._pending_rows += sum(len(pending.rows) for pending in this_turn)
            self._changed.notify()

    def stop(self, timeout: float | None = None) -> None:
        """Predict what is queued, then end the thread."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _serve(self) -> None:
        while True:
            with self._changed:
                while not self._pending and not self._stopping:
                    self._changed.wait()
                if not self._pending:
                    self._finished = True
                    return
                if self._batching and self._max_wait > 0:
                    deadline = time.monotonic() + self._max_wait
                    while self._pending_rows < self._max_rows and not self._stopping:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._changed.wait(left)
                batch = self._take_batch()
            self._run(batch)

    def _take_batch(self) -> list[_Pending]:
        batch = [self._pending.popleft()]
        total = len(batch[0].rows)
        while self._batching and self._pending and total + len(self._pending[0].rows) <= self._max_rows:
            batch.append(self._pending.popleft())
            total += len(batch[-1].rows)
        self._pending_rows -= total
        return batch

    def _run(self, batch: list[_Pending]) -> None:
        try:
            response = self._predict_rows([row for pending in batch for row in pending.rows])
        except Exception as error:
            self._settle(batch, [error] * len(batch))
            return
        if len(batch) == 1:
            self._settle(batch, [response])
            return
        predictions = getattr(response, self._field)
        starts = list(itertools.accumulate((len(pending.rows) for pending in batch), initial=0))
        self._settle(
            batch,
            [
                response.model_copy(update={self._field: predictions[begin:end]})
                for begin, end in itertools.pairwise(starts)
            ],
        )

    @staticmethod
    def _settle(batch: list[_Pending], outcomes: list[BaseModel | Exception]) -> None:
        """Hand each request its outcome, on its own event loop (one wake-up per loop and batch)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Pending, BaseModel | Exception]]] = {}
        for pending, outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(pending.loop, []).append((pending, outcome))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_set_outcomes, settled)
            except RuntimeError:  # that loop has closed: nobody is waiting
                continue


def _set_outcomes(settled: list[tuple[_Pending, BaseModel | Exception]]) -> None:
    for pending, outcome in settled:
        if pending.future.done():  # its client went away
            continue
        if isinstance(outcome, Exception):
            pending.future.set_exception(outcome)
        else:
            pending.future.set_result(outcome)
