"""The inference queue: predictions on their own thread, batches formed while the model runs,
each request getting exactly its own rows back; no work for callers who left, no fault that
ends the thread."""

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pydantic import BaseModel

from modelserving.runtime.admission import DeadlineExceeded, Refused, Ticket
from modelserving.runtime.batching import INLINE_STRIKES, InferenceQueue, PredictionCountError


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
    running_call = asyncio.create_task(queue.submit(first))
    await wait_until_running(model)
    waiting = [asyncio.create_task(queue.submit(rows)) for rows in others]
    await asyncio.sleep(0.05)  # all of them queued behind the running call
    model.release.set()
    return list(await asyncio.gather(running_call, *waiting, return_exceptions=True))


def test_a_request_is_predicted_on_the_inference_thread_not_the_event_loop() -> None:
    model = Model()

    async def scenario() -> BaseModel:
        async with running(model, name="the-inference-thread") as queue:
            return await queue.submit([1, 2])

    assert predictions(asyncio.run(scenario())) == [2, 4]
    assert model.calls == [2]
    assert model.threads == {"the-inference-thread"}


def test_the_event_loop_keeps_running_while_the_model_computes() -> None:
    model = Model()
    model.release.clear()

    async def scenario() -> tuple[int, list[int]]:
        async with running(model) as queue:
            prediction = asyncio.create_task(queue.submit([1]))
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
                return await queue.submit([row])

            return list(await asyncio.gather(*(request(i) for i in range(6))))

    assert [predictions(r) for r in asyncio.run(scenario())] == [[2 * i] for i in range(6)]
    assert model.calls == [6]


def test_a_request_queued_as_the_queue_stops_is_refused_not_left_waiting() -> None:
    model = Model()

    async def scenario() -> None:
        queue = InferenceQueue(model, "predictions", max_rows=10)
        queue.start()
        late = asyncio.create_task(queue.submit([1]))
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
            return await queue.submit([1, 2, 3, 4])

    assert predictions(asyncio.run(scenario())) == [2, 4, 6, 8]


def test_a_failing_batch_is_retried_request_by_request_so_only_the_bad_rows_fail() -> None:
    model = Model(fail_on=3)

    async def scenario() -> list[BaseModel | BaseException]:
        async with running(model, max_rows=4) as queue:
            return await queued_behind_a_running_call(queue, model, [0, 0], *([i, i] for i in range(1, 6)))

    results = asyncio.run(scenario())
    # batches [0], [1 2], [3 4] (fails, then [3] fails alone and [4] succeeds), [5]
    assert model.calls == [2, 4, 4, 2, 2, 2]
    failed = [i for i, result in enumerate(results) if isinstance(result, ValueError)]
    assert failed == [3]
    assert all(predictions(results[i]) == [2 * i, 2 * i] for i in range(6) if i not in failed)


class Miscounting(Model):
    """Drops the last prediction of every call with more than `up_to` rows."""

    def __init__(self, up_to: int) -> None:
        super().__init__()
        self.up_to = up_to

    def __call__(self, rows: Sequence[int]) -> Doubled:
        response = super().__call__(rows)
        if len(rows) > self.up_to:
            response.predictions.pop()
        return response


@pytest.mark.parametrize(
    ("up_to", "answered"),
    [(1, [[2], [4], [6]]), (0, [PredictionCountError] * 3)],
    ids=["miscounts batches only", "miscounts every call"],
)
def test_a_model_returning_another_number_of_predictions_gives_nobody_anothers_answer(
    up_to: int, answered: list[Any]
) -> None:
    model = Miscounting(up_to)

    async def scenario() -> list[BaseModel | BaseException]:
        async with running(model) as queue:
            return await queued_behind_a_running_call(queue, model, [0], [1], [2], [3])

    results = asyncio.run(scenario())[1:]
    assert model.calls[1:] == [3, 1, 1, 1]  # the batch of three, then each alone
    for result, expected in zip(results, answered, strict=True):
        if isinstance(expected, list):
            assert predictions(result) == expected
        else:
            assert isinstance(result, expected), result


def test_no_fault_in_the_thread_ends_it() -> None:
    """A model that exits, a response without predictions, an observer that raises: each request
    fails on its own, and the thread serves the next."""

    class Faulty(Model):
        def __call__(self, rows: Sequence[int]) -> Any:
            if rows[0] == 1:
                raise SystemExit(3)
            if rows[0] == 2:
                return object()  # no `predictions`
            return super().__call__(rows)

    model = Faulty()
    observed: list[int] = []

    def observer(ticket: Ticket, taken_at: float) -> None:
        observed.append(1)
        if len(observed) == 3:
            raise RuntimeError("an observer's fault")

    async def answer(queue: InferenceQueue, row: int) -> BaseModel | BaseException:
        try:
            return await queue.submit([row])
        except Exception as error:
            return error

    async def scenario() -> list[BaseModel | BaseException]:
        async with running(model, on_taken=observer) as queue:
            return [await answer(queue, row) for row in (1, 2, 3, 4)]

    results = asyncio.run(scenario())
    assert isinstance(results[0], RuntimeError) and "SystemExit" in str(results[0])
    assert isinstance(results[1], AttributeError)
    assert predictions(results[2]) == [6]  # its observer raised: the request is served all the same
    assert predictions(results[3]) == [8]


def test_a_request_whose_deadline_passed_or_whose_caller_left_is_never_predicted() -> None:
    model = Model()
    dropped: list[str] = []

    async def scenario() -> list[BaseModel | BaseException]:
        async with running(model, on_dropped=dropped.append) as queue:
            now = time.monotonic()
            expired = Ticket(now - 1, deadline=now - 0.5)
            left = Ticket(now, deadline=now + 60)
            left.abandon()
            return list(
                await asyncio.gather(
                    queue.submit([1], expired),
                    queue.submit([2], left),
                    queue.submit([3]),
                    return_exceptions=True,
                )
            )

    late, gone, served = asyncio.run(scenario())
    assert isinstance(late, DeadlineExceeded) and late.status == 504
    assert isinstance(gone, Refused) and gone.reason == "cancelled"
    assert predictions(served) == [6]
    assert model.calls == [1]  # only the request someone waited for
    assert sorted(dropped) == ["cancelled", "deadline"]


def test_a_call_held_past_the_longest_allowed_while_others_wait_is_stuck_and_they_are_answered() -> None:
    model = Model()
    model.release.clear()

    async def scenario() -> tuple[bool, bool, BaseException | BaseModel]:
        async with running(model) as queue:
            first = asyncio.create_task(queue.submit([1]))
            await wait_until_running(model)
            alone = queue.stuck(time.monotonic() + 10, longest_call=5)  # nobody waits yet
            waiting = asyncio.create_task(queue.submit([2]))
            await asyncio.sleep(0.05)
            stuck = queue.stuck(time.monotonic() + 10, longest_call=5)
            assert queue.fail_waiting(Refused("not responding", "unavailable")) == 1
            (answered,) = await asyncio.gather(waiting, return_exceptions=True)
            model.release.set()
            await first
            return alone, stuck, answered

    alone, stuck, answered = asyncio.run(scenario())
    assert (alone, stuck) == (False, True)
    assert isinstance(answered, Refused) and answered.reason == "unavailable"
    assert model.calls == [1]


def test_waiting_for_company_batches_requests_that_arrive_apart() -> None:
    model = Model()

    async def scenario() -> None:
        async with running(model, max_wait=0.2) as queue:

            async def late(rows: list[int]) -> BaseModel:
                await asyncio.sleep(0.02)
                return await queue.submit(rows)

            await asyncio.gather(queue.submit([1]), late([2]))

    asyncio.run(scenario())
    assert model.calls == [2]


def test_a_request_whose_client_left_does_not_disturb_the_others() -> None:
    model = Model()
    model.release.clear()

    async def scenario() -> list[int]:
        async with running(model) as queue:
            first = asyncio.create_task(queue.submit([0]))
            await wait_until_running(model)
            gone = asyncio.create_task(queue.submit([1]))
            kept = asyncio.create_task(queue.submit([2]))
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
        assert predictions(await queue.submit([1])) == [2]
        await asyncio.to_thread(queue.stop, 5)
        with pytest.raises(RuntimeError, match="stopped"):
            await queue.submit([2])

    asyncio.run(scenario())


def test_a_small_request_alone_that_finds_the_model_idle_is_predicted_on_its_event_loop() -> None:
    model = Model()

    async def scenario() -> list[list[int]]:
        async with running(model, inline_rows=2, name="the-inference-thread") as queue:
            small = await queue.submit([1, 2])
            assert model.threads == {threading.current_thread().name}
            large = await queue.submit([1, 2, 3])
            assert model.threads == {threading.current_thread().name, "the-inference-thread"}
            model.threads.clear()
            in_company = await queue.submit([1], alone=False)  # others in flight: the thread's
            assert model.threads == {"the-inference-thread"}
            return [predictions(small), predictions(large), predictions(in_company)]

    assert asyncio.run(scenario()) == [[2, 4], [2, 4, 6], [2]]
    assert model.calls == [2, 3, 1]


def test_a_small_request_waits_its_turn_while_the_model_is_busy() -> None:
    """While a call runs on the thread, small requests queue behind it (never two calls at once)."""
    model = Model()

    async def scenario() -> list[BaseModel | BaseException]:
        async with running(model, inline_rows=2, name="the-inference-thread") as queue:
            return await queued_behind_a_running_call(queue, model, [0, 0, 0], [1], [2])

    assert [predictions(r) for r in asyncio.run(scenario())] == [[0, 0, 0], [2], [4]]
    assert model.calls == [3, 2]
    assert model.threads == {"the-inference-thread"}


def test_slow_calls_on_the_event_loop_send_every_later_call_to_the_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = Model()

    async def scenario() -> None:
        async with running(model, inline_rows=2, inline_budget=0.0, name="the-inference-thread") as queue:
            for row in range(INLINE_STRIKES):  # each over the budget: the last of them strikes out
                await queue.submit([row])
            assert model.threads == {threading.current_thread().name}
            await queue.submit([9])
            assert "the-inference-thread" in model.threads

    asyncio.run(scenario())
    assert "on the event loop took" in caplog.text and "on its thread from now on" in caplog.text


@pytest.mark.parametrize(
    ("model", "raised"),
    [(Model(fail_on=1), ValueError), (Miscounting(up_to=1), PredictionCountError)],
    ids=["model raises", "model miscounts"],
)
def test_a_call_on_the_event_loop_that_fails_fails_its_caller_only(
    model: Model, raised: type[Exception]
) -> None:
    async def scenario() -> list[int]:
        async with running(model, inline_rows=2) as queue:
            with pytest.raises(raised):
                await queue.submit([1, 1])
            return predictions(await queue.submit([3]))  # and the next is served

    assert asyncio.run(scenario()) == [6]
    assert model.threads == {threading.current_thread().name}
