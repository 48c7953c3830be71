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


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """Figures a test module computes itself (`figures_of(item)`), for tests that cannot take
    `record_property` (Hypothesis refuses function-scoped fixtures)."""
    figures_of = getattr(getattr(item, "module", None), "figures_of", None)
    if call.when == "call" and figures_of is not None:
        item.user_properties.extend(figures_of(item).items())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    target = os.environ.get("RELIABILITY_REPORT")
    ran = report.when == "call"
    could_not_run = report.when == "setup" and not report.passed
    if not target or not (ran or could_not_run):
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
