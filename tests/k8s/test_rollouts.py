"""Progressive delivery (issue #27): staging and prod release through Argo Rollouts; dev stays plain.

For every staging and prod overlay: the Rollout runs the service's own Deployment's template
(`workloadRef`), selects its pods, routes through ingress-nginx with the REST and gRPC
Ingresses as its stable Ingresses, each of which sends everything to the stable Service; the
canary Service is the stable one's twin; the steps go small share, analysis, larger share,
analysis, then full; every analysis names the overlay's AnalysisTemplate and gives it every
argument it needs. The objects validate against the engine's schema (test_manifests.py:
test_schema_strict); here that schema is shown to refuse what the API server would quietly drop.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from k8s import argo_rollouts
from k8s.overlays import OVERLAYS, Obj, render

RELEASED = [(service, env) for service, env in OVERLAYS if env != "dev"]
ARGUMENT = re.compile(r"\{\{\s*args\.([A-Za-z0-9_-]+)\s*\}\}")


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    (found,) = (obj for obj in objs if obj["kind"] == kind and name in (None, obj["metadata"]["name"]))
    return found


def rollout_of(service: str, env: str) -> tuple[list[Obj], Obj]:
    objs = render(service, env)
    return objs, one(objs, "Rollout")


@pytest.mark.parametrize("service", sorted({service for service, _ in OVERLAYS}))
def test_dev_stays_a_plain_deployment(service: str) -> None:
    kinds = {obj["kind"] for obj in render(service, "dev")}
    assert not kinds & {"Rollout", "AnalysisTemplate"}


@pytest.mark.parametrize(("service", "env"), RELEASED)
def test_the_rollout_runs_the_deployments_template(service: str, env: str) -> None:
    objs, rollout = rollout_of(service, env)
    deployment = one(objs, "Deployment")
    name = deployment["metadata"]["name"]
    assert rollout["metadata"]["name"] == name == f"{service}-model"
    assert rollout["spec"]["workloadRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": name,
        "scaleDown": "progressively",
    }
    assert rollout["spec"]["selector"] == deployment["spec"]["selector"]
    assert deployment["spec"]["replicas"] == 0  # the Rollout runs the pods
    if env == "prod":  # its HPA's to scale
        assert "replicas" not in rollout["spec"]
        assert one(objs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["kind"] == "Rollout"
    else:
        assert rollout["spec"]["replicas"] >= 2


@pytest.mark.parametrize(("service", "env"), RELEASED)
def test_traffic_goes_through_both_ingresses_by_stable_and_canary_services(service: str, env: str) -> None:
    objs, rollout = rollout_of(service, env)
    canary = rollout["spec"]["strategy"]["canary"]
    stable = one(objs, "Service", canary["stableService"])
    twin = one(objs, "Service", canary["canaryService"])
    assert canary["canaryService"] != canary["stableService"]
    assert twin["spec"] == stable["spec"]  # same ports, same selector; the controller adds the hash
    assert twin["metadata"]["labels"] == stable["metadata"]["labels"]

    nginx = canary["trafficRouting"]["nginx"]
    ingresses = [obj for obj in objs if obj["kind"] == "Ingress"]
    assert sorted(nginx["stableIngresses"]) == sorted(obj["metadata"]["name"] for obj in ingresses)
    assert len(ingresses) == 2  # REST and gRPC
    for ingress in ingresses:  # the controller requires its stable Ingresses to route to stable
        assert ingress["spec"]["ingressClassName"] == "nginx"
        backends = {
            path["backend"]["service"]["name"]
            for rule in ingress["spec"]["rules"]
            for path in rule["http"]["paths"]
        }
        assert backends == {canary["stableService"]}, ingress["metadata"]["name"]
    assert nginx["additionalIngressAnnotations"] == {"canary-by-header": "X-Canary"}


@pytest.mark.parametrize(("service", "env"), RELEASED)
def test_steps_go_shadow_then_small_analysis_larger_analysis_then_full(service: str, env: str) -> None:
    objs, rollout = rollout_of(service, env)
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    actions = [next(iter(step)) for step in steps]
    assert actions == [
        "setCanaryScale",  # shadow: a canary pod, no traffic, mirrored to
        "pause",
        "setCanaryScale",  # back to pods in proportion to its weight
        "setWeight",
        "analysis",
        "setWeight",
        "analysis",
    ]
    assert steps[0]["setCanaryScale"] == {"replicas": 1}
    assert steps[2]["setCanaryScale"] == {"matchTrafficWeight": True}
    small, larger = steps[3]["setWeight"], steps[5]["setWeight"]
    assert 0 < small <= 20 < larger < 100, (small, larger)  # after the last step: 100, promoted

    template = one(objs, "AnalysisTemplate")
    declared = {arg["name"]: arg for arg in template["spec"]["args"]}
    needed = {name for name, arg in declared.items() if "value" not in arg}
    for analysis in (steps[4]["analysis"], steps[6]["analysis"]):
        assert analysis["templates"] == [{"templateName": template["metadata"]["name"]}]
        given = {arg["name"]: arg for arg in analysis["args"]}
        assert set(given) == needed
        assert given["canary-hash"]["valueFrom"] == {"podTemplateHashValue": "Latest"}
        assert given["stable-hash"]["valueFrom"] == {"podTemplateHashValue": "Stable"}


@pytest.mark.parametrize(("service", "env"), RELEASED)
def test_every_pod_shadows_to_the_canary_service_and_may_reach_it(service: str, env: str) -> None:
    objs, rollout = rollout_of(service, env)
    (config,) = (obj for obj in objs if obj["metadata"]["name"].startswith(f"{service}-model-config-"))
    assert config["data"]["SHADOW_URL"] == f"http://{rollout['spec']['strategy']['canary']['canaryService']}"
    assert 0 < float(config["data"]["SHADOW_SAMPLE_RATE"]) <= 0.1  # what steady-state self-mirroring costs
    policy = one(objs, "NetworkPolicy", f"{service}-model-shadow")
    own_pods = [{"podSelector": {"matchExpressions": [
        {"key": "app.kubernetes.io/name", "operator": "In", "values": [service]}
    ]}}]  # fmt: skip
    http = [{"port": "http", "protocol": "TCP"}]
    assert policy["spec"] == {
        "podSelector": rollout["spec"]["selector"],
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": own_pods, "ports": http}],
        "egress": [{"to": own_pods, "ports": http}],
    }


@pytest.mark.parametrize("service", sorted({service for service, _ in OVERLAYS}))
def test_dev_does_not_shadow(service: str) -> None:
    objs = render(service, "dev")
    (config,) = (obj for obj in objs if obj["metadata"]["name"].startswith(f"{service}-model-config-"))
    assert "SHADOW_URL" not in config["data"]
    assert not [obj for obj in objs if obj["metadata"]["name"].endswith("-shadow")]


@pytest.mark.parametrize(("service", "env"), RELEASED)
def test_every_query_uses_only_declared_arguments(service: str, env: str) -> None:
    template = one(render(service, env), "AnalysisTemplate")
    declared = {arg["name"] for arg in template["spec"]["args"]}
    names = [metric["name"] for metric in template["spec"]["metrics"]]
    assert names == ["error-ratio", "p99-over-stable", "output-psi"]
    for metric in template["spec"]["metrics"]:
        prometheus = metric["provider"]["prometheus"]
        used = set(ARGUMENT.findall(prometheus["query"] + prometheus["address"]))
        assert used <= declared, f"{metric['name']}: undeclared {sorted(used - declared)}"
        assert {"canary-hash", "service", "namespace"} <= used


def broken(obj: Obj, path: tuple[Any, ...], value: Any) -> Obj:
    """A copy of `obj` with the value at `path` set (a new key where the path ends in one)."""
    copied = copy.deepcopy(obj)
    node = copied
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return copied


CANARY = ("spec", "strategy", "canary")
HASH_ARG = (*CANARY, "steps", 4, "analysis", "args", 3, "valueFrom", "podTemplateHashValue")
PROMETHEUS = ("spec", "metrics", 0, "provider", "prometheus")


@pytest.mark.parametrize(
    ("kind", "path", "value", "error"),
    [
        ("Rollout", (*CANARY, "canaryServce"), "titanic-model-canary", "Additional properties"),
        ("Rollout", (*CANARY, "steps", 3, "pause"), {"duration": "1m"}, "too many properties"),
        ("Rollout", HASH_ARG, "Canary", "is not one of"),
        ("Rollout", (*CANARY, "steps", 3, "setWeight"), 120, "is greater than the maximum"),
        ("Rollout", ("spec", "workloadRef", "scaleDown"), "always", "is not one of"),
        ("Rollout", ("apiVersion",), "argoproj.io/v1beta1", "was expected"),
        ("AnalysisTemplate", ("spec", "metrics", 0, "count"), 2.5, "is not valid under any of the given"),
        ("AnalysisTemplate", (*PROMETHEUS, "qurey"), "up", "Additional properties"),
    ],
)  # fmt: skip
def test_the_schema_refuses_what_the_api_server_would_drop(
    kind: str, path: tuple[Any, ...], value: Any, error: str
) -> None:
    obj = one(render("titanic", "prod"), kind)
    assert argo_rollouts.validate(obj) == []
    errors = argo_rollouts.validate(broken(obj, path, value))
    assert any(error in message for message in errors), errors
