"""Adaptive micro-batching: concurrent predictions for one model become one predict call.

A request never waits for a timer by default. A request that is the only one the
process is answering (`alone()`) is predicted at once: nothing could join it.
Otherwise it queues its rows and yields for one turn of the event loop, in which
every request already parsed queues too; the first to resume predicts them all
in one call, up to `max_rows` rows, and the others find their results set. Under
load, requests that arrived while the last batch ran form the next one: the
busier the server, the bigger the batches, and the model's fixed per-call cost
(input checks, array set-up) is paid once per batch instead of once per request.
This is Triton's dynamic batcher with no queue delay, or MLServer's adaptive
batching with a zero timeout; `max_wait` > 0 holds the flush that long to gather
more (and then a lone request waits too).

Predict calls run on the event loop itself: inference is CPU-bound and holds the
GIL, so a thread hop would add latency without adding throughput in one worker.
Each request gets its own slice of the batch's response (the response type's one
list of per-row predictions); an exception fails only the requests of its batch.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel


class MicroBatcher:
    """Coalesces concurrent `predict(rows)` calls into one call of `predict_rows`."""

    def __init__(
        self,
        predict_rows: Callable[[list[Any]], BaseModel],
        predictions_field: str,
        *,
        max_rows: int,
        max_wait: float = 0.0,
        alone: Callable[[], bool] = lambda: False,
    ) -> None:
        self._predict_rows = predict_rows
        self._alone = alone
        self._field = predictions_field
        self._max_rows = max_rows
        self._max_wait = max_wait
        self._queue: deque[tuple[Sequence[Any], asyncio.Future[BaseModel]]] = deque()
        self._queued_rows = 0
        self._flush_scheduled = False

    async def predict(self, rows: Sequence[Any]) -> BaseModel:
        if self._max_wait <= 0 and not self._queue and self._alone():
            return self._predict_rows(list(rows))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[BaseModel] = loop.create_future()
        self._queue.append((rows, future))
        self._queued_rows += len(rows)
        if self._max_wait > 0 and self._queued_rows < self._max_rows:
            if not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_later(self._max_wait, self._flush)
            return await future
        # One turn of the event loop, in which every request already parsed queues too; then the
        # first of them to resume predicts for all (the others find their result set). A lone
        # request pays one loop turn, not a scheduled flush plus a wake-up.
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            if not future.done():
                self._queue.remove((rows, future))
                self._queued_rows -= len(rows)
            raise
        if not future.done():
            self._flush()
        return future.result()

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._queue:
            self._run(self._take_batch())

    def _take_batch(self) -> list[tuple[Sequence[Any], asyncio.Future[BaseModel]]]:
        batch = [self._queue.popleft()]
        total = len(batch[0][0])
        while self._queue and total + len(self._queue[0][0]) <= self._max_rows:
            rows, future = self._queue.popleft()
            batch.append((rows, future))
            total += len(rows)
        self._queued_rows -= total
        return batch

    def _run(self, batch: list[tuple[Sequence[Any], asyncio.Future[BaseModel]]]) -> None:
        try:
            response = self._predict_rows([row for rows, _ in batch for row in rows])
        except Exception as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        if len(batch) == 1:
            responses = [response]
        else:
            predictions = getattr(response, self._field)
            starts = [0]
            for rows, _ in batch:
                starts.append(starts[-1] + len(rows))
            responses = [
                response.model_copy(update={self._field: predictions[begin:end]})
                for begin, end in itertools.pairwise(starts)
            ]
        for (_, future), own in zip(batch, responses, strict=True):
            if not future.done():  # its client may have gone
                future.set_result(own)
