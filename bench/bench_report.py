"""The benchmark's report: the issue's ratios, a text table and a PNG chart, from one run's results."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

TITANIC_1 = "titanic, 1 passenger"
CEILING = "framework ceiling (/health_check/load_balancer)"
BASELINE = "baseline (seed style), 1 passenger"
V2_1 = "titanic, v2 infer, 1 row"
GRPC_1 = "titanic, gRPC ModelInfer, 1 row"
IRIS_1, DIABETES_1 = "iris, 1 flower", "diabetes, 1 patient"
IRIS_CEILING = "iris, framework ceiling (/health_check/load_balancer)"
DIABETES_CEILING = "diabetes, framework ceiling (/health_check/load_balancer)"

# Figures a ratio divides, as (scenario, workers, concurrency, micro-batching): the harness
# measures each group together, in one-second slices taken in turn, so the VM's drift falls on all alike.
COMPARED = [
    [(CEILING, 1, 16, True), (TITANIC_1, 1, 16, True), (V2_1, 1, 16, True), (GRPC_1, 1, 16, True)],
    [(TITANIC_1, 1, 1, True), (TITANIC_1, 1, 1, False), (CEILING, 1, 1, True)],
    # Each service's one-row route against its own empty route, on the same worker (issue #26).
    [(IRIS_CEILING, 1, 1, True), (IRIS_1, 1, 1, True)],
    [(DIABETES_CEILING, 1, 1, True), (DIABETES_1, 1, 1, True)],
]

# ratio name -> (target, "min" if the figure must reach it, "max" if it must stay under it)
TARGETS = {
    "titanic_over_baseline_throughput": (10.0, "min"),
    "titanic_over_framework_ceiling_throughput": (0.6, "min"),
    "titanic_p99_over_p50": (3.0, "max"),
    "titanic_batch_1000_p50_ms": (25.0, "max"),
    "v2_over_typed_throughput": (0.8, "min"),
    "grpc_over_typed_throughput": (1.0, "min"),  # issue #18
    "titanic_startup_seconds": (2.0, "max"),
    "batching_p50_cost_at_concurrency_1": (0.10, "max"),
    # Issue #26: a one-row prediction at c1 costs at most half again its service's empty route.
    "titanic_c1_p50_over_empty_route": (1.5, "max"),
    "iris_c1_p50_over_empty_route": (1.5, "max"),
    "diabetes_c1_p50_over_empty_route": (1.5, "max"),
}


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (the nearest rank); 0 without values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


# Issue #24's overload targets: each case's goodput over its capacity, at each multiple of it
# (None: reported, no target), then what must hold in every case and at every rate.
GOODPUT_TARGETS = {(100, 3): 0.9, (100, 10): 0.8, (1, 3): 0.6, (1, 10): None}
OVERLOAD_TARGETS = {
    "refused_p99_ms": (5.0, "max"),
    "livez_p99_ms": (50.0, "max"),
    "rss_growth_mb": (50.0, "max"),
    "recovery_seconds": (1.0, "max"),
}


REFUSAL_CPU_US = 1000.0  # a refusal costs less than a millisecond of the worker's time


def overload_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each overload figure with a target, whether it is met."""
    overload = report.get("overload", {})
    checked = [
        {
            "case": f"a REST refusal, {cost['rows']} row(s)",
            "figure": "cpu_us_per_refusal",
            "value": cost["cpu_us_per_refusal"],
            "target": REFUSAL_CPU_US,
            "kind": "max",
            "met": cost["cpu_us_per_refusal"] <= REFUSAL_CPU_US,
        }
        for cost in overload.get("refusal_cost", [])
    ]
    for result in overload.get("cases", []):
        goodput = GOODPUT_TARGETS.get((result["rows"], result["multiple"]))
        targets = {**({"goodput_ratio": (goodput, "min")} if goodput else {}), **OVERLOAD_TARGETS}
        for figure, (target, kind) in targets.items():
            value = result[figure]
            checked.append(
                {
                    "case": f"{result['case']}, {result['multiple']}x",
                    "figure": figure,
                    "value": value,
                    "target": target,
                    "kind": kind,
                    "met": value >= target if kind == "min" else value <= target,
                }
            )
    return checked


def find(
    report: dict[str, Any], scenario: str, *, workers: int = 1, concurrency: int = 16, batching: bool = True
) -> dict[str, Any]:
    for result in report["results"]:
        if (result["scenario"], result["workers"], result["concurrency"], result["micro_batching"]) == (
            scenario,
            workers,
            concurrency,
            batching,
        ):
            return dict(result)
    raise KeyError(f"no result for {scenario} w{workers} c{concurrency} batching={batching}")


def per_round(result: dict[str, Any], figure: str) -> list[float]:
    """One figure of a scenario in each round (a single value for results without rounds)."""
    return list(result.get(f"rounds_{figure}") or [result[figure]])


def ratios(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of issue #7, computed from this run only, with whether it is met.

    A ratio pairs figures measured in the same round, measured together (`COMPARED`), and reports
    the median over rounds, so the VM's drift cancels out of it.
    """

    def titanic(figure: str, **where: Any) -> list[float]:
        return per_round(find(report, TITANIC_1, **where), figure)

    def over(top: list[float], bottom: list[float]) -> list[float]:
        if not all(bottom):
            raise KeyError("a divisor measured nothing")  # no ratio rather than a wrong one
        return [a / b for a, b in zip(top, bottom, strict=True)]

    def one_row_over_empty_route(one_row: str, empty: str) -> Callable[[], list[float]]:
        def p50_at_c1(scenario: str) -> list[float]:
            return per_round(find(report, scenario, concurrency=1), "p50_ms")

        return lambda: over(p50_at_c1(one_row), p50_at_c1(empty))

    formulas: dict[str, Callable[[], list[float]]] = {
        "titanic_over_baseline_throughput": lambda: over(
            titanic("requests_per_second"), per_round(find(report, BASELINE), "requests_per_second")
        ),
        "titanic_over_framework_ceiling_throughput": lambda: over(
            titanic("requests_per_second"), per_round(find(report, CEILING), "requests_per_second")
        ),
        "titanic_p99_over_p50": lambda: over(titanic("p99_ms"), titanic("p50_ms")),
        "titanic_batch_1000_p50_ms": lambda: per_round(
            find(report, "titanic, batch of 1000", concurrency=1), "p50_ms"
        ),
        "v2_over_typed_throughput": lambda: over(
            per_round(find(report, V2_1), "requests_per_second"),
            titanic("requests_per_second"),
        ),
        "grpc_over_typed_throughput": lambda: over(
            per_round(find(report, GRPC_1), "requests_per_second"),
            titanic("requests_per_second"),
        ),
        "titanic_startup_seconds": lambda: [report["startup_seconds"]["titanic"]],
        **{
            f"{service}_c1_p50_over_empty_route": one_row_over_empty_route(one, empty)
            for service, one, empty in [
                ("titanic", TITANIC_1, CEILING),
                ("iris", IRIS_1, IRIS_CEILING),
                ("diabetes", DIABETES_1, DIABETES_CEILING),
            ]
        },
        "batching_p50_cost_at_concurrency_1": lambda: [
            ratio - 1
            for ratio in over(
                titanic("p50_ms", concurrency=1), titanic("p50_ms", concurrency=1, batching=False)
            )
        ],
    }
    figures = {}
    for name, formula in formulas.items():
        try:
            figures[name] = statistics.median(formula())
        except KeyError:
            continue  # not measured in this run (a --quick run, or a scenario that completed nothing)
    out = {}
    for name, value in figures.items():
        target, kind = TARGETS[name]
        out[name] = {
            "value": round(value, 3),
            "target": target,
            "kind": kind,
            "met": value >= target if kind == "min" else value <= target,
        }
    return out


def table(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"{machine['cpu_count']} x {machine['cpu_model']}; {report['duration_seconds']} s per scenario"
        f" and round, median of {report.get('rounds', 1)} rounds",
        f"{'scenario':<50} {'workers':>7} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'errors':>6} {'worker RSS MB':>14}",
    ]
    for r in report["results"]:
        name = r["scenario"] + ("" if r["micro_batching"] else " (batching off)")
        lines.append(
            f"{name:<50} {r['workers']:>7} {r['concurrency']:>4} {r['requests_per_second']:>9.1f}"
            f" {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors'] + r['non_2xx']:>6}"
            f" {'/'.join(map(str, r['worker_rss_mb'])):>14}"
        )
    for name, figures in report.get("slow_model", {}).items():
        label = f"slow model (300 ms per call): {name}"
        lines.append(
            f"{label:<50} {1:>7} {'':>4} {figures['requests_per_second']:>9.1f}"
            f" {figures['p50_ms']:>8.2f} {figures['p99_ms']:>8.2f} {figures['errors']:>6}"
        )
    lines.append("")
    lines.append(f"start-up to /readyz 200 (s): {report['startup_seconds']}")
    for name, ratio in report.get("ratios", {}).items():
        sign = ">=" if ratio["kind"] == "min" else "<="
        lines.append(
            f"{name:<45} {ratio['value']:>9} (target {sign} {ratio['target']})"
            f" {'met' if ratio['met'] else 'NOT MET'}"
        )
    if report.get("overload"):
        lines += ["", "overload (open-loop, callers with 1 s deadlines):"]
        for cost in report["overload"].get("refusal_cost", []):
            lines.append(
                f"a REST refusal of {cost['rows']} row(s): {cost['cpu_us_per_refusal']} us of server CPU"
            )
        lines.append(
            f"{'case':<44} {'capacity':>9} {'goodput':>8} {'refused p99':>12} {'livez p99':>10}"
            f" {'RSS +MB':>8} {'recovery s':>10}"
        )
        for r in report["overload"].get("cases", []):
            lines.append(
                f"{r['case'] + ', ' + str(r['multiple']) + 'x':<44} {r['capacity_per_second']:>9.0f}"
                f" {r['goodput_ratio']:>8.2f} {r['refused_p99_ms']:>12.1f} {r['livez_p99_ms']:>10.1f}"
                f" {r['rss_growth_mb']:>8.1f} {r['recovery_seconds']:>10.2f}"
            )
        checked = report.get("overload_targets", [])
        unmet = [t for t in checked if not t["met"]]
        lines.append(f"overload targets: {len(checked) - len(unmet)} met, {len(unmet)} not met")
        for t in unmet:
            sign = ">=" if t["kind"] == "min" else "<="
            lines.append(f"  NOT MET: {t['case']}: {t['figure']} {t['value']} (target {sign} {t['target']})")
    return "\n".join(lines)


def render_chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(r["scenario"] for r in report["results"]))
    series = [("1 worker, c1", 1, 1), ("1 worker, c16", 1, 16), ("2 workers, c16", 2, 16)]
    figure, axis = plt.subplots(figsize=(12, 6))
    width = 0.27
    for index, (label, workers, concurrency) in enumerate(series):
        values = []
        for scenario in scenarios:
            try:
                values.append(
                    find(report, scenario, workers=workers, concurrency=concurrency)["requests_per_second"]
                )
            except KeyError:
                values.append(0)
        axis.barh([i + (index - 1) * width for i in range(len(scenarios))], values, height=width, label=label)
    axis.set_yticks(range(len(scenarios)), scenarios)
    axis.invert_yaxis()
    axis.set_xlabel("requests per second")
    machine = report["machine"]
    axis.set_title(f"Model serving throughput ({machine['cpu_count']} x {machine['cpu_model']})")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
