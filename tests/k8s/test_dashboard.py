"""The Grafana dashboard shipped with every overlay (issue #28, point 4), checked offline: each
overlay ships the file as it is in the repo, in a ConfigMap Grafana's sidecar finds by its label;
the panels cover what an operator must see; every query is valid PromQL, once its variables have
values, and is filtered to the one service and namespace the dashboard's variables pick.

That each query returns data from a real service is tests/containers/test_dashboard.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from observability.dashboard import (
    CONFIG_MAP,
    DASHBOARD,
    DISCOVERY_LABEL,
    KEY,
    RATE_INTERVAL,
    dashboard,
    panels,
    queries,
    variable_names,
)

from k8s.overlays import OVERLAYS, promtool, render

# What issue #28 asks the dashboard to show, as the metrics (and drift's recorded series) that
# show it: REST and gRPC rate, errors and latency; queue depth and wait; batch size; refusals;
# drift per feature; a canary's agreement and score distribution.
REQUIRED_SERIES = {
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "grpc_server_handled_total",
    "grpc_server_handling_seconds_bucket",
    "model_requests_in_flight",
    "model_queue_duration_seconds_bucket",
    "model_batch_size_bucket",
    "model_requests_shed_total",
    "model:input_psi:1h",
    "model_shadow_rows_total",
    "model_outputs_total",
}
SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\{([^}]*)\}")
FILTERS = ('namespace="$namespace"', 'app_kubernetes_io_name="$service"')
EXAMPLE_VALUES = {
    "namespace": "modelserving-prod",
    "service": "titanic",
    RATE_INTERVAL: "2m",
    "datasource": "x",
}


@pytest.mark.parametrize(("service", "env"), OVERLAYS)
def test_every_overlay_ships_the_dashboard_for_grafanas_sidecar(service: str, env: str) -> None:
    (shipped,) = (
        obj
        for obj in render(service, env)
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == CONFIG_MAP
    )
    label, value = DISCOVERY_LABEL
    assert shipped["metadata"]["labels"][label] == value
    assert shipped["metadata"]["namespace"] == f"modelserving-{env}"
    assert shipped["data"] == {KEY: DASHBOARD.read_text()}


def test_the_panels_show_every_measure_the_issue_names() -> None:
    shown = {metric for query in queries() for metric, _ in SELECTOR.findall(query.expr)}
    assert shown >= REQUIRED_SERIES, f"not on the dashboard: {sorted(REQUIRED_SERIES - shown)}"


def test_every_selector_is_filtered_to_the_chosen_service_and_namespace() -> None:
    unfiltered = [
        f"{query.name}: {metric}{{{matchers}}}"
        for query in queries()
        for metric, matchers in SELECTOR.findall(query.expr)
        if not all(f in matchers for f in FILTERS)
    ]
    assert not unfiltered
    assert all(SELECTOR.search(query.expr) for query in queries())


def test_every_variable_a_query_uses_is_the_dashboards_or_grafanas() -> None:
    declared = variable_names() | {RATE_INTERVAL}
    assert {"datasource", "namespace", "service"} <= variable_names()
    undeclared = {(query.name, v) for query in queries() for v in query.variables() - declared}
    assert not undeclared


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool checks expressions only inside rules: each query becomes one recording rule.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": query.with_values(EXAMPLE_VALUES)}
                    for i, query in enumerate(queries())
                ],
            }
        ]
    }
    rules_file = tmp_path / "dashboard.rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules))
    checked = subprocess.run([promtool(), "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(queries())} rules found" in checked.stdout


def test_panels_use_the_chosen_datasource_and_have_distinct_ids() -> None:
    board = dashboard()
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in panels(board))
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
