"""The benchmark harness measures: real servers under wrk and h2load (gRPC), figures for each
scenario, JSON and a PNG.

A smoke test with three-second scenarios (one second left the seed-style baseline, at about a
second per request under CI's load, with nothing completed); it checks that the harness works, never
how fast anything is (benchmarks are not tests).
"""

import json
import shutil
from pathlib import Path

import benchmark
from benchmark import SCENARIOS

from modelserving.testing import yield_the_cpu

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
