"""Prod scales on load the pods report: the HPA's Pods metric is the one prometheus-adapter's
shipped rule serves, CPU is the second measure, and the rule's query, rendered as the adapter
renders it for the HPA's request, gives each pod its own minute's average of requests in
flight (promtool, on synthetic series)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8s.overlays import K8S_ROOT, SERVICES, promtool, render

RULES = K8S_ROOT / "cluster" / "prometheus-adapter-rules.yaml"
NAMESPACE = "modelserving-prod"


def adapter_rule() -> dict[str, Any]:
    (rule,) = yaml.safe_load(RULES.read_text())["rules"]
    return dict(rule)


def hpa(service: str) -> dict[str, Any]:
    (found,) = (obj for obj in render(service, "prod") if obj["kind"] == "HorizontalPodAutoscaler")
    return dict(found)


@pytest.mark.parametrize("service", SERVICES)
def test_prod_scales_on_requests_in_flight_then_cpu(service: str) -> None:
    metrics = hpa(service)["spec"]["metrics"]
    assert [metric["type"] for metric in metrics] == ["Pods", "Resource"]
    assert metrics[0]["pods"]["metric"]["name"] == adapter_rule()["name"]["as"]
    assert metrics[0]["pods"]["target"]["type"] == "AverageValue"
    assert metrics[1]["resource"]["name"] == "cpu"


def rendered_query(pods: list[str]) -> str:
    """The rule's metricsQuery as the adapter renders it for an HPA asking for `pods`."""
    rule = adapter_rule()
    series = rule["seriesQuery"].partition("{")[0].strip("'")
    matchers = f'namespace="{NAMESPACE}",pod=~"{"|".join(pods)}"'
    return str(
        rule["metricsQuery"]
        .replace("<<.Series>>", series)
        .replace("<<.LabelMatchers>>", matchers)
        .replace("<<.GroupBy>>", "pod")
    )


def test_the_adapters_query_gives_each_pod_its_minutes_average(tmp_path: Path) -> None:
    pods = ["titanic-model-a", "titanic-model-b"]
    series = 'model_requests_in_flight{{namespace="{namespace}", pod="{pod}", model="titanic"}}'
    tests = {
        "rule_files": [],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [
                    # a: 4 requests in flight; b: idle, then 12 on average over the last minute (8, 16, 12...)
                    {"series": series.format(namespace=NAMESPACE, pod=pods[0]), "values": "4x20"},
                    {
                        "series": series.format(namespace=NAMESPACE, pod=pods[1]),
                        "values": "0x11 12 8 16 12 12 12 12 12",
                    },
                    # not asked for: another pod, another namespace
                    {"series": series.format(namespace=NAMESPACE, pod="iris-model-c"), "values": "50x20"},
                    {"series": series.format(namespace="modelserving-dev", pod=pods[0]), "values": "99x20"},
                ],
                "promql_expr_test": [
                    {
                        "expr": rendered_query(pods),
                        "eval_time": "4m",
                        "exp_samples": [
                            {"labels": f'{{pod="{pods[0]}"}}', "value": 4},
                            {"labels": f'{{pod="{pods[1]}"}}', "value": 12},
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "adapter.test.yaml").write_text(yaml.safe_dump(tests, width=1000))
    tested = subprocess.run(
        [promtool(), "test", "rules", "adapter.test.yaml"], capture_output=True, text=True, cwd=tmp_path
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
