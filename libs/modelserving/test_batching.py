"""The inference queue: predictions on their own thread, batches formed while the model runs,
each request getting exactly its own rows back."""

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
from pydantic import BaseModel

from modelserving.batching import InferenceQueue


class Doubled(BaseModel):
    predictions: list[int]
    note: str = "x"


class Model:
    """Doubles each row; records every call's size and thread; can be held mid-call."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[int] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on
        self.running = threading.Event()  # set while a call runs
        self.release = threading.Event()
        self.release.set()

    def __call__(self, rows: Sequence[int]) -> Doubled:
        self.calls.append(len(rows))
        self.threads.add(threading.current_thread().name)
        self.running.set()
        self.release.wait(5)
        self.running.clear()
        if self.fail_on is not None and self.fail_on in rows:
            raise ValueError(f"bad row {self.fail_on}")
        return Doubled(predictions=[2 * row for row in rows])


def predictions(response: BaseModel | BaseException) -> list[int]:
    assert isinstance(response, Doubled), response
    return response.predictions


@asynccontextmanager
async def running(model: Model, **options: object) -> AsyncIterator[InferenceQueue]:
    queue = InferenceQueue(model, "predictions", **{"max_rows": 100, **options})  # type: ignore[arg-type]
    queue.start()
    try:
        yield queue
    finally:
        await asyncio.to_thread(queue.stop, 5)


async def wait_until_running(model: Model) -> None:
    assert await asyncio.to_thread(model.running.wait, 5), "the model was never called"


async def queued_behind_a_running_call(
    queue: InferenceQueue, model: Model, first: list[int], *others: list[int]
) -> list[BaseModel | BaseException]:
    """`first` is predicted by a held model while `others` queue; then the model is released."""
    model.release.clear()
    running_call = asyncio.create_task(queue.infer(first))
    await wait_until_running(model)
    waiting = [asyncio.create_task(queue.infer(rows)) for rows in others]
    await asyncio.sleep(0.05)  # all of them queued behind the running call
    model.release.set()
    return list(await asyncio.gather(running_call, *waiting, return_exceptions=True))


def test_a_request_is_predicted_on_the_inference_thread_not_the_event_loop() -> None:
    model = Model()

    async def scenario() -> BaseModel:
        async with running(model, name="the-inference-thread") as queue:
            return await queue.infer([1, 2])

    assert predictions(asyncio.run(scenario())) == [2, 4]
    assert model.calls == [2]
    assert model.threads == {"the-inference-thread"}


def test_the_event_loop_keeps_running_while_the_model_computes() -> None:
    model = Model()
    model.release.clear()

    async def scenario() -> tuple[int, list[int]]:
        async with running(model) as queue:
            prediction = asyncio.create_task(queue.infer([1]))
            await wait_until_running(model)
            ticks = 0
            for _ in range(20):  # the loop turns while the model is held mid-call
                await asyncio.sleep(0.001)
                ticks += 1
            model.release.set()
            return ticks, predictions(await prediction)

    assert asyncio.run(scenario()) == (20, [2])


def test_requests_that_arrive_while_the_model_runs_form_the_next_batch() -> None:
    model = Model()

    async def scenario() -> list[BaseModel | BaseException]:
        async with running(model) as queue:
            return await queued_behind_a_running_call(queue, model, [0], *([i, i + 100] for i in range(1, 9)))

    responses = asyncio.run(scenario())
    assert [predictions(r) for r in responses] == [[0]] + [[2 * i, 2 * i + 200] for i in range(1, 9)]
    assert all(isinstance(r, Doubled) and r.note == "x" for r in responses)
    assert model.calls == [1, 16]


def test_requests_of_one_turn_of_the_event_loop_form_one_batch() -> None:
    model = Model()

    async def scenario() -> list[BaseModel]:
        async with running(model) as queue:

            async def request(row: int) -> BaseModel:
                time.sleep(0.01)  # parsing it: the loop's turn goes on, the GIL is free meanwhile
                return await queue.infer([row])

            return list(await asyncio.gather(*(request(i) for i in range(6))))

    assert [predictions(r) for r in asyncio.run(scenario())] == [[2 * i] for i in range(6)]
    assert model.calls == [6]


def test_a_request_queued_as_the_queue_stops_is_refused_not_left_waiting() -> None:
    model = Model()

    async def scenario() -> None:
        queue = InferenceQueue(model, "predictions", max_rows=10)
        queue.start()
        late = asyncio.create_task(queue.infer([1]))
        await asyncio.sleep(0)  # queued for the end of this turn
        queue.stop(5)  # in the same turn: the thread ends before the turn does
        with pytest.raises(RuntimeError, match="stopped"):
            await asyncio.wait_for(late, 5)

    asyncio.run(scenario())


def test_with_batching_off_every_request_is_its_own_call() -> None:
    model = Model()

    async def scenario() -> list[BaseModel | BaseException]:
        async with running(model, batching=False) as queue:
            return await queued_behind_a_running_call(queue, model, [0], *([i] for i in range(1, 5)))

    assert [predictions(r) for r in asyncio.run(scenario())] == [[2 * i] for i in range(5)]
    assert model.calls == [1, 1, 1, 1, 1]


def test_a_batch_never_exceeds_max_rows() -> None:
    model = Model()

    async def scenario() -> None:
        async with running(model, max_rows=5) as queue:
            await queued_behind_a_running_call(queue, model, [0, 0], *([i, i] for i in range(1, 10)))

    asyncio.run(scenario())
    assert max(model.calls) == 4  # two requests of two rows; a third would make six
    assert sum(model.calls) == 20


@pytest.mark.parametrize("max_rows", [1, 3])
def test_a_request_bigger_than_max_rows_still_goes_alone(max_rows: int) -> None:
    model = Model()

    async def scenario() -> BaseModel:
        async with running(model, max_rows=max_rows) as queue:
            return await queue.infer([1, 2, 3, 4])

    assert predictions(asyncio.run(scenario())) == [2, 4, 6, 8]


def test_a_failing_call_fails_only_the_requests_in_it() -> None:
    model = Model(fail_on=3)

    async def scenario() -> list[BaseModel | BaseException]:
        async with running(model, max_rows=4) as queue:
            return await queued_behind_a_running_call(queue, model, [0, 0], *([i, i] for i in range(1, 6)))

    results = asyncio.run(scenario())
    assert model.calls == [2, 4, 4, 2]  # batches [0], [1 2], [3 4], [5]
    failed = [i for i, result in enumerate(results) if isinstance(result, ValueError)]
    assert failed == [3, 4]
    assert all(predictions(results[i]) == [2 * i, 2 * i] for i in range(6) if i not in failed)


def test_waiting_for_company_batches_requests_that_arrive_apart() -> None:
    model = Model()

    async def scenario() -> None:
        async with running(model, max_wait=0.2) as queue:

            async def late(rows: list[int]) -> BaseModel:
                await asyncio.sleep(0.02)
                return await queue.infer(rows)

            await asyncio.gather(queue.infer([1]), late([2]))

    asyncio.run(scenario())
    assert model.calls == [2]


def test_a_request_whose_client_left_does_not_disturb_the_others() -> None:
    model = Model()
    model.release.clear()

    async def scenario() -> list[int]:
        async with running(model) as queue:
            first = asyncio.create_task(queue.infer([0]))
            await wait_until_running(model)
            gone = asyncio.create_task(queue.infer([1]))
            kept = asyncio.create_task(queue.infer([2]))
            await asyncio.sleep(0.02)
            gone.cancel()
            model.release.set()
            await first
            with pytest.raises(asyncio.CancelledError):
                await gone
            return predictions(await kept)

    assert asyncio.run(scenario()) == [4]


def test_a_stopped_queue_predicts_what_was_queued_and_refuses_more() -> None:
    model = Model()

    async def scenario() -> None:
        queue = InferenceQueue(model, "predictions", max_rows=10)
        queue.start()
        assert predictions(await queue.infer([1])) == [2]
        await asyncio.to_thread(queue.stop, 5)
        with pytest.raises(RuntimeError, match="stopped"):
            await queue.infer([2])

    asyncio.run(scenario())
