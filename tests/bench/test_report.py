"""The benchmark report's ratios: figures of one round paired, the median over rounds, no division by zero."""

from typing import Any

import bench_report
from bench_report import BASELINE, CEILING, TITANIC_1


def result(scenario: str, rps: list[float], *, concurrency: int = 16) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "workers": 1,
        "concurrency": concurrency,
        "micro_batching": True,
        "requests_per_second": sorted(rps)[len(rps) // 2],
        "rounds_requests_per_second": rps,
        "rounds_p50_ms": [1.0] * len(rps),
        "rounds_p99_ms": [2.0] * len(rps),
    }


def report(*results: dict[str, Any]) -> dict[str, Any]:
    return {"results": list(results), "startup_seconds": {"titanic": 1.5}}


def test_a_ratio_pairs_figures_of_the_same_round_and_takes_the_median() -> None:
    ratios = bench_report.ratios(
        report(
            result(TITANIC_1, [100.0, 300.0, 50.0]),
            result(BASELINE, [10.0, 10.0, 1.0]),
            result(CEILING, [200.0, 400.0, 100.0]),
        )
    )
    # per round 10, 30, 50 (not 100 / 10 from the medians of each scenario)
    assert ratios["titanic_over_baseline_throughput"] == {
        "value": 30.0,
        "target": 10.0,
        "kind": "min",
        "met": True,
    }
    assert ratios["titanic_over_framework_ceiling_throughput"]["value"] == 0.5
    assert ratios["titanic_over_framework_ceiling_throughput"]["met"] is False
    assert ratios["titanic_p99_over_p50"]["value"] == 2.0
    assert ratios["titanic_startup_seconds"] == {"value": 1.5, "target": 2.0, "kind": "max", "met": True}


def test_a_divisor_that_completed_nothing_gives_no_ratio_instead_of_a_crash() -> None:
    ratios = bench_report.ratios(
        report(
            result(TITANIC_1, [100.0, 300.0]), result(BASELINE, [12.0, 0.0]), result(CEILING, [200.0, 600.0])
        )
    )
    assert "titanic_over_baseline_throughput" not in ratios
    assert ratios["titanic_over_framework_ceiling_throughput"]["value"] == 0.5


def test_scenarios_not_run_give_no_ratio() -> None:
    assert set(bench_report.ratios(report(result(TITANIC_1, [100.0])))) == {
        "titanic_p99_over_p50",
        "titanic_startup_seconds",
    }


def overload_result(rows: int, multiple: int, **figures: float) -> dict[str, Any]:
    base = {"refused_p99_ms": 4.0, "livez_p99_ms": 20.0, "rss_growth_mb": 10.0, "recovery_seconds": 0.1}
    return {
        "case": f"{rows} rows",
        "rows": rows,
        "multiple": multiple,
        "goodput_ratio": 0.95,
        **base,
        **figures,
    }


def test_overload_targets_hold_each_case_to_its_goodput_and_every_case_to_the_rest() -> None:
    checked = bench_report.overload_targets(
        {
            "overload": {
                "refusal_cost": [
                    {"rows": 1, "cpu_us_per_refusal": 70.0},
                    {"rows": 100, "cpu_us_per_refusal": 1200.0},
                ],
                "cases": [
                    overload_result(100, 3, goodput_ratio=0.85),  # under 0.9
                    overload_result(100, 10, goodput_ratio=0.85),  # over 0.8
                    overload_result(1, 10, goodput_ratio=0.05, livez_p99_ms=80.0),  # goodput only reported
                ],
            }
        }
    )
    unmet = {(t["case"], t["figure"]) for t in checked if not t["met"]}
    assert unmet == {
        ("a REST refusal, 100 row(s)", "cpu_us_per_refusal"),
        ("100 rows, 3x", "goodput_ratio"),
        ("1 rows, 10x", "livez_p99_ms"),
    }
    assert ("1 rows, 10x", "goodput_ratio") not in {(t["case"], t["figure"]) for t in checked}
    assert len(checked) == 2 + 2 * 5 + 4
