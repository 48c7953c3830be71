"""The benchmark harness measures: real servers under wrk and h2load (gRPC), figures for each
scenario, JSON and a PNG.

A smoke test with three-second scenarios (one second left the seed-style baseline, at about a
second per request under CI's load, with nothing completed); it checks that the harness works, never
how fast anything is (benchmarks are not tests).
"""

import json
import shutil
from pathlib import Path

import bench_report
import benchmark
import overload
from benchmark import SCENARIOS

from modelserving.dev.testing import yield_the_cpu

yield_the_cpu()  # this module drives servers with wrk at full speed

SMOKE = [
    s
    for s in SCENARIOS
    if s.name.startswith(("framework ceiling", "titanic, 1 passenger", "titanic, gRPC", "baseline"))
]


def test_harness_measures_each_scenario_and_writes_json_and_png(tmp_path: Path) -> None:
    for tool in ("wrk", "h2load"):
        assert shutil.which(tool), f"{tool} not found: ./pants test installs it (3rdparty/system/tools.txt)"
    assert len(SMOKE) == 4
    report = benchmark.run(Path.cwd(), duration=3, warmup=1, scenarios=SMOKE, full=False, rounds=2)
    benchmark.write(report, tmp_path)

    results = json.loads((tmp_path / "results.json").read_text())
    measured = {(r["scenario"], r["concurrency"]) for r in results["results"]}
    assert measured == {(s.name, c) for s in SMOKE for c in (1, 16)}
    for result in results["results"]:
        assert result["requests_per_second"] > 0, result
        assert result["errors"] == result["non_2xx"] == 0, result
        assert 0 < result["p50_ms"] <= result["p99_ms"], result
        assert all(rss > 10 for rss in result["worker_rss_mb"]), result
        assert len(result["rounds_requests_per_second"]) == 2, result
    assert results["machine"]["cpu_count"] >= 1
    assert set(results["startup_seconds"]) == {"titanic", "baseline"}
    assert {"titanic_over_baseline_throughput", "grpc_over_typed_throughput"} <= set(results["ratios"])
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_overload_scenario_measures_refusals_probes_memory_and_recovery() -> None:
    """Two seconds of three times capacity, over REST and gRPC: every figure is there, callers were
    refused, and the worker recovered (how well it did is the benchmark's to say, not a test's)."""
    cases = [case for case in overload.CASES if case.rows == 1]
    measured = overload.run(Path.cwd(), seconds=2, cases=cases, multiples=(3,))
    ((cost,), results) = measured["refusal_cost"], measured["cases"]
    assert cost["rows"] == 1 and cost["refused"] > 0 and cost["cpu_us_per_refusal"] > 0, cost
    assert [(r["transport"], r["multiple"]) for r in results] == [("REST", 3), ("gRPC", 3)]
    for result in results:
        assert result["capacity_per_second"] > 0 and result["goodput_per_second"] > 0, result
        assert result["livez_p99_ms"] > 0 and result["recovery_seconds"] < 30, result
    rest, grpc = results
    assert rest["refused_per_second"] > 0, rest
    assert grpc["grpc_codes"].get("OK", 0) > 0, grpc
    checked = bench_report.overload_targets({"overload": measured})
    assert {target["figure"] for target in checked} == {
        "cpu_us_per_refusal",
        "goodput_ratio",
        "refused_p99_ms",
        "livez_p99_ms",
        "rss_growth_mb",
        "recovery_seconds",
    }
