"""Micro-batching: concurrent requests share predict calls, each gets exactly its own rows back."""

import asyncio
from collections.abc import Sequence

import pytest
from pydantic import BaseModel

from modelserving.batching import MicroBatcher


class Doubled(BaseModel):
    predictions: list[int]
    note: str = "x"


class Model:
    """Doubles each row; records the size of every call."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[int] = []
        self.fail_on = fail_on

    def __call__(self, rows: Sequence[int]) -> Doubled:
        self.calls.append(len(rows))
        if self.fail_on is not None and self.fail_on in rows:
            raise ValueError(f"bad row {self.fail_on}")
        return Doubled(predictions=[2 * row for row in rows])


def predictions(response: BaseModel | BaseException) -> list[int]:
    assert isinstance(response, Doubled), response
    return response.predictions


def test_a_lone_request_is_predicted_at_once_in_one_call() -> None:
    model = Model()

    async def scenario() -> BaseModel:
        return await MicroBatcher(model, "predictions", max_rows=100).predict([1, 2])

    assert predictions(asyncio.run(scenario())) == [2, 4]
    assert model.calls == [2]


@pytest.mark.parametrize(
    ("alone", "max_wait", "calls"), [(True, 0.0, [2, 2]), (False, 0.0, [4]), (True, 0.01, [4])]
)
def test_a_request_alone_in_the_process_skips_the_loop_turn_unless_batches_are_held_open(
    alone: bool, max_wait: float, calls: list[int]
) -> None:
    """Two requests started together: when each is told it is alone, neither waits for the other."""
    model = Model()
    batcher = MicroBatcher(model, "predictions", max_rows=100, max_wait=max_wait, alone=lambda: alone)

    async def scenario() -> list[BaseModel]:
        return list(await asyncio.gather(batcher.predict([1, 2]), batcher.predict([3, 4])))

    assert [predictions(r) for r in asyncio.run(scenario())] == [[2, 4], [6, 8]]
    assert model.calls == calls


def test_concurrent_requests_share_calls_and_each_gets_its_own_rows() -> None:
    model = Model()
    batcher = MicroBatcher(model, "predictions", max_rows=1000)
    requests = [[i, i + 100] for i in range(20)]

    async def scenario() -> list[BaseModel]:
        return await asyncio.gather(*(batcher.predict(rows) for rows in requests))

    responses = asyncio.run(scenario())
    assert [predictions(r) for r in responses] == [[2 * a, 2 * b] for a, b in requests]
    assert all(isinstance(r, Doubled) and r.note == "x" for r in responses)
    assert sum(model.calls) == 40
    assert len(model.calls) < len(requests), f"no batching: calls of {model.calls}"


def test_a_batch_never_exceeds_max_rows() -> None:
    model = Model()
    batcher = MicroBatcher(model, "predictions", max_rows=5)

    async def scenario() -> list[BaseModel]:
        return await asyncio.gather(*(batcher.predict([i, i]) for i in range(10)))

    asyncio.run(scenario())
    assert max(model.calls) <= 5
    assert sum(model.calls) == 20


def test_a_failing_call_fails_only_the_requests_in_it() -> None:
    model = Model(fail_on=3)
    batcher = MicroBatcher(model, "predictions", max_rows=4)

    async def scenario() -> list[BaseModel | BaseException]:
        return await asyncio.gather(*(batcher.predict([i, i]) for i in range(6)), return_exceptions=True)

    results = asyncio.run(scenario())
    failed = [i for i, result in enumerate(results) if isinstance(result, ValueError)]
    assert 3 in failed
    assert len(failed) < len(results)
    assert all(predictions(results[i]) == [2 * i, 2 * i] for i in range(6) if i not in failed)


def test_waiting_for_company_batches_requests_that_arrive_apart() -> None:
    model = Model()
    batcher = MicroBatcher(model, "predictions", max_rows=100, max_wait=0.05)

    async def late(rows: list[int]) -> BaseModel:
        await asyncio.sleep(0.01)
        return await batcher.predict(rows)

    async def scenario() -> tuple[BaseModel, BaseModel]:
        return await asyncio.gather(batcher.predict([1]), late([2]))

    asyncio.run(scenario())
    assert model.calls == [2]


@pytest.mark.parametrize("max_rows", [1, 3])
def test_a_request_bigger_than_max_rows_still_goes_alone(max_rows: int) -> None:
    model = Model()

    async def scenario() -> BaseModel:
        return await MicroBatcher(model, "predictions", max_rows=max_rows).predict([1, 2, 3, 4])

    assert predictions(asyncio.run(scenario())) == [2, 4, 6, 8]
