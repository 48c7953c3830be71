"""The alerting rules shipped with every overlay: valid for Prometheus (`promtool check rules`),
each alert firing and staying quiet as its unit tests say (`promtool test rules`), every alert
covered both ways, and what the overlays ship is exactly the tested file.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from k8s.overlays import OVERLAYS, promtool, render

RULES_DIR = Path(__file__).resolve().parents[2] / "k8s" / "components" / "environment"
RULES, TESTS = RULES_DIR / "alerts.rules.yaml", RULES_DIR / "alerts.test.yaml"
CONFIG_MAP = "modelserving-alerts"


def rules() -> list[dict[str, str]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def alert_names() -> set[str]:
    return {rule["alert"] for rule in rules() if "alert" in rule}


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def test_the_rules_are_valid() -> None:
    checked = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_names()) + len(recorded_names())} rules found" in checked.stdout


def test_every_alert_fires_and_stays_quiet_as_its_tests_say() -> None:
    tested = subprocess.run(
        [promtool(), "test", "rules", TESTS.name], capture_output=True, text=True, cwd=RULES_DIR
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = [case for test in yaml.safe_load(TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert fires == quiet == alert_names()


def test_every_recorded_series_has_its_values_tested() -> None:
    tested = {
        case["expr"]
        for test in yaml.safe_load(TESTS.read_text())["tests"]
        for case in test.get("promql_expr_test", [])
    }
    for name in recorded_names():
        assert any(name in expr for expr in tested), name


@pytest.mark.parametrize(("service", "env"), OVERLAYS)
def test_every_overlay_ships_the_tested_rules(service: str, env: str) -> None:
    (shipped,) = (
        obj
        for obj in render(service, env)
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == CONFIG_MAP
    )
    assert shipped["data"] == {RULES.name: RULES.read_text()}
