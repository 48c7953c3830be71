"""The harness's measuring order: the figures each ratio compares together, each figure once, and
slices long enough to complete something."""

from pathlib import Path
from typing import Any

import benchmark
import pytest
from bench_report import COMPARED, TITANIC_1
from benchmark import SCENARIOS

FULL = [(1, True), (2, True), (1, False)]


@pytest.mark.parametrize("app", ["titanic", "iris", "diabetes"])
def test_each_compared_group_is_measured_together_and_every_other_figure_alone(app: str) -> None:
    scenarios = [s for s in SCENARIOS if s.app == app]
    names = {s.name for s in scenarios}
    groups = [group for group in COMPARED if all(name in names for name, *_ in group)]
    assert groups, f"no compared group for {app}"
    steps = benchmark.schedule(scenarios, FULL)
    assert [[benchmark.key(job) for job in step] for step in steps[: len(groups)]] == groups
    assert all(len(step) == 1 for step in steps[len(groups) :])


def test_every_figure_is_measured_once_whatever_the_order() -> None:
    titanic = [s for s in SCENARIOS if s.app == "titanic"]
    order = [benchmark.key(job) for step in benchmark.schedule(titanic, FULL) for job in step]
    expected = (
        [(s.name, 1, concurrency, True) for s in titanic for concurrency in (1, 16)]
        + [(s.name, 2, 16, True) for s in titanic]
        + [(TITANIC_1, 1, 1, False)]
    )
    assert sorted(order) == sorted(expected)


SERVER: Any = ("http://x", None, 0.0, "http://y")  # a server as `running` yields it


def test_a_slice_that_completes_nothing_is_taken_again_for_longer(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[float] = []

    def fake_wrk(
        url: str, scenario: Any, concurrency: int, seconds: float, scratch: Path, pin: bool
    ) -> dict[str, int]:  # every request takes 3 s
        asked.append(seconds)
        return {"requests": concurrency if seconds >= 3 else 0, "duration_us": round(seconds * 1e6)}

    monkeypatch.setattr(benchmark, "wrk", fake_wrk)
    figures = benchmark.one_slice(SERVER, SCENARIOS[0], 16, Path(), False)
    assert asked == [1, 2, 4]
    assert figures == {"requests": 16, "duration_us": 4_000_000}


def test_a_slice_that_never_completes_stops_at_the_longest(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[float] = []

    def fake_wrk(
        url: str, scenario: Any, concurrency: int, seconds: float, scratch: Path, pin: bool
    ) -> dict[str, int]:
        asked.append(seconds)
        return {"requests": 0, "duration_us": round(seconds * 1e6)}

    monkeypatch.setattr(benchmark, "wrk", fake_wrk)
    assert benchmark.one_slice(SERVER, SCENARIOS[0], 16, Path(), False)["requests"] == 0
    assert asked[-1] == benchmark.LONGEST_SLICE
