"""Records each reliability test's outcome and figures for RELIABILITY.md.

With RELIABILITY_REPORT=<file> set, every test of these suites appends one JSON
line: suite, case, outcome, duration and the figures it recorded with
`record_property` (requests held, RSS, ...). `tests/reliability/report.py`
turns the file into RELIABILITY.md. Without the variable nothing is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    target = os.environ.get("RELIABILITY_REPORT")
    if not target or (report.when != "call" and not (report.when == "setup" and report.outcome != "passed")):
        return
    module, _, case = report.nodeid.partition("::")
    record = {
        "suite": Path(module).stem,
        "case": case,
        "outcome": report.outcome,
        "seconds": round(report.duration, 2),
        "figures": dict(report.user_properties),
    }
    with Path(target).open("a") as out:
        out.write(json.dumps(record) + "\n")
