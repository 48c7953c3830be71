"""Soak: Titanic under 64 concurrent clients for 60 s, with nothing failing and no memory growth.

The packaged PEX runs as production does (one worker, JSON access logs); `wrk`
(the benchmark harness's driver) holds 64 connections busy. Bounded: about 75 s.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import benchmark
from benchmark import PASSENGER, Scenario

SOAK_SECONDS = 60
WARMUP_SECONDS = 10
CONCURRENCY = 64
TITANIC = Scenario("titanic, 1 passenger", "titanic", "/predict_survival_by_passengers", [PASSENGER])


def test_sixty_seconds_at_concurrency_64_without_errors_or_memory_growth(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    pex = Path.cwd() / "services.titanic" / "serve.pex"
    with benchmark.running(pex, workers=1, micro_batching=True, logs=tmp_path) as (url, process, _, _):
        benchmark.wrk(url, TITANIC, CONCURRENCY, WARMUP_SECONDS, tmp_path, pin=False)
        (after_warmup,) = benchmark.worker_rss_mb(process)
        soak = benchmark.wrk(url, TITANIC, CONCURRENCY, SOAK_SECONDS, tmp_path, pin=False)
        (after_soak,) = benchmark.worker_rss_mb(process)
    figures = {
        "requests": soak["requests"],
        "errors": soak["errors"],
        "non_2xx": soak["non_2xx"],
        "rss_after_warmup_mb": after_warmup,
        "rss_after_soak_mb": after_soak,
    }
    print("soak:", json.dumps(figures))
    for name, value in figures.items():
        record_property(name, value)
    assert soak["requests"] > SOAK_SECONDS * 100, figures  # it really was under load
    assert soak["errors"] == 0 and soak["non_2xx"] == 0, figures
    assert after_soak <= after_warmup * 1.10, figures
