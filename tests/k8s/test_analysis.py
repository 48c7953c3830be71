"""The canary analysis's queries (components/canary/analysistemplate.yaml), run by promtool on
synthetic series: healthy, erring, slow and drifted canaries each get the verdict the template's
conditions give them.

Each metric's query is rendered with the arguments the Rollout passes, and its success and
failure conditions (`result[0] <= 0.01`) become PromQL comparisons of that query; promtool
evaluates both after 20 minutes of traffic. Successful: the success condition holds; Failed: the
failure condition holds; Inconclusive: neither (Argo Rollouts then pauses for a person). The
series carry what the cluster's scrape gives them (namespace, the pods' labels), with another
service and another namespace failing beside them, which no verdict may see.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8s.overlays import promtool, render

NAMESPACE, SERVICE = "modelserving-prod", "titanic"
ARGS = {"service": SERVICE, "namespace": NAMESPACE, "stable-hash": "5f7c9d", "canary-hash": "7b4d2e"}
CONDITION = re.compile(r"^result\[0\] (<=|<|>=|>) ([0-9.]+)$")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DECILES = (
    "<0.1",
    "0.1-0.2",
    "0.2-0.3",
    "0.3-0.4",
    "0.4-0.5",
    "0.5-0.6",
    "0.6-0.7",
    "0.7-0.8",
    "0.8-0.9",
    ">=0.9",
)
MINUTES = 30


@dataclass
class Pods:
    """One version's pods' traffic, per minute."""

    rest: int = 600
    rest_errors: int = 0  # 503s among them
    grpc: int = 120
    grpc_errors: int = 0  # INTERNAL among them
    latency: dict[float, int] = field(
        default_factory=lambda: {0.0025: 300, 0.005: 300}
    )  # upper bound: requests
    outputs: tuple[int, ...] = (10,) * 10  # per decile


def series(pods: Pods, labels: str) -> list[dict[str, str]]:
    """The Prometheus series of `pods` (labels: namespace, app and hash), counting from 0."""

    def counter(name: str, extra: str, per_minute: int) -> dict[str, str]:
        return {"series": f"{name}{{{labels}, {extra}}}", "values": f"0+{per_minute}x{MINUTES}"}

    route = 'route="/predict_survival_by_passengers", method="POST"'
    grpc = 'grpc_service="inference.GRPCInferenceService", grpc_method="ModelInfer"'
    made = [
        counter("http_requests_total", f'{route}, status="200"', pods.rest - pods.rest_errors),
        counter("http_requests_total", f'{route}, status="503"', pods.rest_errors),
        counter(
            "http_requests_total", 'route="/livez", method="GET", status="200"', 6
        ),  # probes: not predictions
        counter("grpc_server_handled_total", f'{grpc}, grpc_code="OK"', pods.grpc - pods.grpc_errors),
        counter("grpc_server_handled_total", f'{grpc}, grpc_code="INTERNAL"', pods.grpc_errors),
    ]
    below = 0
    for bound in LATENCY_BUCKETS:
        below += pods.latency.get(bound, 0)
        made.append(
            counter("http_request_duration_seconds_bucket", f'{route}, status="200", le="{bound}"', below)
        )
    made.append(counter("http_request_duration_seconds_bucket", f'{route}, status="200", le="+Inf"', below))
    made += [
        counter("model_outputs_total", f'model="{SERVICE}", bin="{name}"', count)
        for name, count in zip(DECILES, pods.outputs, strict=True)
    ]
    return made


def cluster(canary: Pods) -> list[dict[str, str]]:
    """Stable and `canary` pods of the service, and others failing where no verdict may look."""
    ours = f'namespace="{NAMESPACE}", app_kubernetes_io_name="{SERVICE}"'
    canary_hash = f'rollouts_pod_template_hash="{ARGS["canary-hash"]}"'
    broken = Pods(rest_errors=300, grpc_errors=120, latency={5.0: 600}, outputs=(100,) + (0,) * 9)
    return [
        *series(Pods(), f'{ours}, rollouts_pod_template_hash="{ARGS["stable-hash"]}"'),
        *series(canary, f"{ours}, {canary_hash}"),
        *series(broken, f'namespace="{NAMESPACE}", app_kubernetes_io_name="iris", {canary_hash}'),
        *series(
            broken, f'namespace="modelserving-staging", app_kubernetes_io_name="{SERVICE}", {canary_hash}'
        ),
    ]


S, F, I = "Successful", "Failed", "Inconclusive"  # noqa: E741  # Argo Rollouts' words
ERRORS, P99, PSI = "error-ratio", "p99-over-stable", "output-psi"
SCENARIOS: dict[str, tuple[Pods, dict[str, str]]] = {
    "healthy": (Pods(rest=60, grpc=12, outputs=(1,) * 10), {ERRORS: S, P99: S, PSI: S}),
    "erring over REST (5 % 503)": (
        Pods(rest=60, rest_errors=3, outputs=(1,) * 10),
        {ERRORS: F, P99: S, PSI: S},
    ),
    "erring over gRPC (25 % INTERNAL)": (Pods(rest=60, grpc=12, grpc_errors=3), {ERRORS: F}),
    "slow (p99 near 250 ms)": (Pods(rest=60, latency={0.1: 30, 0.25: 30}), {ERRORS: S, P99: F, PSI: S}),
    "a little slower (within half again)": (Pods(rest=60, latency={0.0025: 20, 0.005: 40}), {P99: S}),
    "drifted (every score over 0.8)": (Pods(outputs=(0,) * 8 + (5, 5)), {ERRORS: S, P99: S, PSI: F}),
    "shifted (psi 0.22)": (Pods(outputs=(1, 1, 1, 1, 2, 2, 3, 3, 3, 3)), {PSI: I}),
    "idle (no traffic yet)": (
        Pods(rest=0, grpc=0, latency={}, outputs=(0,) * 10),
        {ERRORS: I, P99: I, PSI: I},
    ),
}


def template_metrics() -> dict[str, dict[str, Any]]:
    (template,) = (obj for obj in render(SERVICE, "prod") if obj["kind"] == "AnalysisTemplate")
    return {metric["name"]: metric for metric in template["spec"]["metrics"]}


def comparison(condition: str) -> str:
    """`result[0] <= 0.01` as PromQL's `<= bool 0.01`; the test knows no other form of condition."""
    match = CONDITION.match(condition)
    assert match, f"condition {condition!r} is not `result[0] <op> <number>`: teach this test its form"
    return f"{match.group(1)} bool {match.group(2)}"


def query(metric: dict[str, Any]) -> str:
    text = str(metric["provider"]["prometheus"]["query"])
    for name, value in ARGS.items():
        text = text.replace(f"{{{{args.{name}}}}}", value)
    assert "{{" not in text, f"{metric['name']}: an argument the test does not give"
    return text


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_canary_gets_its_verdict(scenario: str, tmp_path: Path) -> None:
    canary, verdicts = SCENARIOS[scenario]
    metrics = template_metrics()
    cases = []
    for name, verdict in verdicts.items():
        metric = metrics[name]
        for condition, holds in (("successCondition", verdict == S), ("failureCondition", verdict == F)):
            expr = f"({query(metric)}) {comparison(metric[condition])}"
            cases.append(
                {"expr": expr, "eval_time": "20m", "exp_samples": [{"labels": "{}", "value": int(holds)}]}
            )
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": cluster(canary), "promql_expr_test": cases}],
    }
    (tmp_path / "analysis.test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    ran = subprocess.run(
        [promtool(), "test", "rules", "analysis.test.yaml"], capture_output=True, text=True, cwd=tmp_path
    )
    assert ran.returncode == 0, f"{scenario}: expected {verdicts}\n{ran.stdout}{ran.stderr}"


def test_every_metric_is_judged_every_way_somewhere() -> None:
    judged = {(name, verdict) for _, verdicts in SCENARIOS.values() for name, verdict in verdicts.items()}
    for name in template_metrics():
        assert {(name, S), (name, F), (name, I)} <= judged, name
