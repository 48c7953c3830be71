"""Overload against the packaged Titanic PEX: callers arriving at three times the worker's
capacity, with 1 s deadlines, over REST and over gRPC (the benchmark's scenario,
bench/overload.py, for a few seconds). Whatever the figures, which are the benchmark's to judge
and are recorded here: the excess is refused (REST: 503; gRPC: it waits in the client, past the
connections' stream limit, or is refused UNAVAILABLE), nothing else fails, the worker stays live
for Kubernetes (every /livez answered well within the probe's 2 s), and it recovers once the load
stops.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import overload
import pytest

from modelserving.dev.testing import yield_the_cpu

yield_the_cpu()  # this module keeps both cores busy

SECONDS = 5.0
LIVENESS_TIMEOUT_MS = 2000  # the Deployment's livenessProbe.timeoutSeconds


@pytest.mark.parametrize("case", overload.CASES, ids=[case.name for case in overload.CASES])
def test_three_times_capacity_is_refused_in_part_and_survived(
    case: overload.Case, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    figures = overload.measure(Path.cwd() / "services.titanic" / "serve.pex", case, 3, SECONDS, tmp_path)
    for name in (
        "capacity_per_second",
        "offered_per_second",
        "goodput_ratio",
        "refused_p99_ms",
        "livez_p99_ms",
        "livez_max_ms",
        "rss_growth_mb",
        "recovery_seconds",
    ):
        record_property(name, figures[name])
    assert figures["goodput_per_second"] > 0, figures
    if case.grpc:  # the excess waits in the client, past the connections' stream limit
        codes = figures["grpc_codes"]
        assert set(codes) <= {"OK", "UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"}, codes
        assert codes.get("OK", 0) > 0, codes
    else:
        assert figures["refused_per_second"] > 0, figures
        assert figures["other_per_second"] == 0, figures  # no 500, no 4xx: answered or refused
    assert figures["livez_max_ms"] < LIVENESS_TIMEOUT_MS, figures
    assert figures["recovery_seconds"] < 5, figures
