"""The harness's measuring order: the figures each ratio compares together, each figure once."""

import benchmark
from bench_report import COMPARED, TITANIC_1
from benchmark import SCENARIOS

FULL = [(1, True), (2, True), (1, False)]


def test_each_compared_group_is_measured_together_and_every_other_figure_alone() -> None:
    steps = benchmark.schedule([s for s in SCENARIOS if s.app == "titanic"], FULL)
    assert [[benchmark.key(job) for job in step] for step in steps[: len(COMPARED)]] == COMPARED
    assert all(len(step) == 1 for step in steps[len(COMPARED) :])


def test_every_figure_is_measured_once_whatever_the_order() -> None:
    titanic = [s for s in SCENARIOS if s.app == "titanic"]
    order = [benchmark.key(job) for step in benchmark.schedule(titanic, FULL) for job in step]
    expected = (
        [(s.name, 1, concurrency, True) for s in titanic for concurrency in (1, 16)]
        + [(s.name, 2, 16, True) for s in titanic]
        + [(TITANIC_1, 1, 1, False)]
    )
    assert sorted(order) == sorted(expected)
