"""Kubernetes manifests (issue #5), validated offline.

For every overlay of every service under k8s/: it renders with `kubectl kustomize` into the
expected objects; every rendered object validates strictly against the official Kubernetes
OpenAPI schemas (kubernetes-validate); and the rules that relate objects to one another, or to
the overlay they were rendered from, hold. The rules about one object at a time (the Pod
Security Standards' restricted profile field by field, probes, resources, images by digest,
the namespace's labels, routes, TLS, ...) are custom checkov checks, CKV_MS_* in k8s/policies,
which tests/k8s/test_checkov.py runs on every overlay. `k8s/release` is tested on a copy of the tree.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore  # no type information shipped
import pytest

from k8s import argo_rollouts
from k8s.overlays import ENVIRONMENTS, K8S_ROOT, OVERLAYS, SERVICES, Obj, Rendered, release, render

K8S_VERSION = "1.32"  # the kubectl on the machines, and the oldest cluster supported
UNRELEASED_DIGEST = "sha256:" + "0" * 64  # what a committed overlay holds until k8s/release pins one
COMMIT = re.compile(r"^[0-9a-f]{40}$")
GATEWAY = ("ingress-nginx", "ingress-nginx")  # the ingress controller's namespace and pod name label
MONITORING = ("monitoring", None)  # the cluster's Prometheus: its namespace, any of its pods
DNS = ("kube-system", "kube-dns")
CLUSTER_SCOPED = {"Namespace"}


def only(objs: Rendered, kind: str, where: str, name: Callable[[str], bool] = lambda _: True) -> Obj:
    matching = [obj for obj in objs if obj["kind"] == kind and name(obj["metadata"]["name"])]
    assert len(matching) == 1, f"{where}: expected exactly one {kind}, rendered {len(matching)}"
    return matching[0]


def settings_of(objs: Rendered, service: str, where: str) -> Obj:
    """The service's generated settings ConfigMap (`<service>-model-config-<hash>`)."""
    return only(objs, "ConfigMap", where, lambda name: name.startswith(f"{service}-model-config-"))


def get(obj: Any, path: str) -> Any:
    """The value at a dotted path, or None where any part is missing."""
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def nginx_size(value: str) -> int:
    """nginx's size syntax (`1m`, `512k`, `1048576`) in bytes; -1 if it is not one."""
    match = re.fullmatch(r"([0-9]+)([kKmMgG]?)", value)
    if not match:
        return -1
    return int(match.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]


def peer_names(peer: Obj) -> tuple[str | None, str | None]:
    """A NetworkPolicy peer as (namespace name, pod name label), None where it selects any."""
    namespace = get(peer, "namespaceSelector.matchLabels") or {}
    expressions = get(peer, "podSelector.matchExpressions") or []
    pods = {e["key"]: e["values"] for e in expressions if e.get("operator") == "In" and len(e["values"]) == 1}
    pod = (pods.get("app.kubernetes.io/name") or pods.get("k8s-app") or [None])[0]
    if get(peer, "podSelector.matchLabels") or len(pods) != len(expressions):
        pod = "<other selector>"
    return namespace.get("kubernetes.io/metadata.name"), pod


def test_every_service_has_every_overlay() -> None:
    assert all(SERVICES), "MODEL_SERVICES is not set: see tests/k8s/BUILD"
    found = {p.parent.name for p in K8S_ROOT.glob("*/overlays")}
    assert found == set(SERVICES), f"k8s/: services with overlays {sorted(found)}, expected {SERVICES}"
    for service, env in OVERLAYS:
        assert (K8S_ROOT / service / "overlays" / env / "kustomization.yaml").is_file(), f"{service}/{env}"


@pytest.mark.parametrize(("service", "env"), OVERLAYS)
def test_overlay_renders_expected_objects(service: str, env: str) -> None:
    kinds = sorted(obj["kind"] for obj in render(service, env))
    expected = [
        "ConfigMap",  # the service's settings
        "ConfigMap",  # the namespace's alerting rules (tests/k8s/test_alerts.py)
        "ConfigMap",  # the namespace's Grafana dashboard (tests/k8s/test_dashboard.py)
        "Deployment",
        "Ingress",  # the REST API's way in: the environment's host, under /<service>
        "Ingress",  # the gRPC API's: a host of the service's own
        "Namespace",
        "NetworkPolicy",  # the namespace's default-deny
        "NetworkPolicy",  # the model's way in and out
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    if env != "dev":  # released as canaries by Argo Rollouts (tests/k8s/test_rollouts.py)
        expected += ["Rollout", "AnalysisTemplate", "Service", "NetworkPolicy"]  # the canary's; the shadow's
    if env == "prod":
        expected.append("HorizontalPodAutoscaler")  # only prod autoscales
    assert kinds == sorted(expected), f"{service}/{env}: rendered kinds {kinds}, expected {sorted(expected)}"


@pytest.mark.parametrize(("service", "env"), OVERLAYS)
def test_schema_strict(service: str, env: str) -> None:
    errors = []
    for obj in render(service, env):
        if argo_rollouts.is_argo_rollouts(obj):  # not Kubernetes' own: its engine's schema
            errors += [
                f"{service}/{env}: {obj['kind']}/{obj['metadata']['name']}: {e}"
                for e in argo_rollouts.validate(obj)
            ]
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{service}/{env}: {obj['kind']}/{obj['metadata']['name']}: {path}: {e.message}")
    assert not errors, (
        f"schema (Kubernetes {K8S_VERSION}, {argo_rollouts.ENGINE} {argo_rollouts.VERSION}, strict):\n"
        + "\n".join(errors)
    )


def relations(objs: Rendered, service: str, env: str) -> list[str]:
    """What fails of the rules that relate the overlay's objects to one another, or to the
    service and environment of the overlay: no single object shows them (checkov sees one)."""
    where = f"{service}/{env}"
    failures: list[str] = []

    def need(ok: bool, obj: Obj, field: str, message: str) -> None:
        if not ok:
            failures.append(f"{where}: {obj['kind']}/{get(obj, 'metadata.name')}: {field}: {message}")

    namespace = f"modelserving-{env}"
    for obj in objs:
        if obj["kind"] not in CLUSTER_SCOPED:
            need(get(obj, "metadata.namespace") == namespace, obj, "metadata.namespace", f"not {namespace}")
    ns = only(objs, "Namespace", where)
    need(ns["metadata"]["name"] == namespace, ns, "metadata.name", f"must be {namespace}")

    # One service's objects: its pods, as its Deployment selects them, its ServiceAccount.
    deploy = only(objs, "Deployment", where)
    pod = deploy["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    selector = get(deploy, "spec.selector.matchLabels") or {}
    need(selector.get("app.kubernetes.io/name") == service, deploy, "spec.selector", f"the pods of {service}")
    svc = only(
        objs, "Service", where, lambda name: name == f"{service}-model"
    )  # the canary's: test_rollouts.py
    need(get(svc, "spec.selector") == selector, svc, "spec.selector", "the Deployment's selector")
    pdb = only(objs, "PodDisruptionBudget", where)
    need(get(pdb, "spec.selector.matchLabels") == selector, pdb, "spec.selector", "the Deployment's selector")
    np = only(
        objs, "NetworkPolicy", where, lambda name: name == f"{service}-model"
    )  # -shadow: test_rollouts.py
    need(
        get(np, "spec.podSelector.matchLabels") == selector,
        np,
        "spec.podSelector",
        "the Deployment's selector",
    )
    sa = only(objs, "ServiceAccount", where)
    need(
        sa["metadata"]["name"] == pod.get("serviceAccountName"),
        sa,
        "metadata.name",
        "the pods' serviceAccountName",
    )

    # The settings the container loads, and what they must agree with.
    cm = settings_of(objs, service, where)
    config = cm.get("data") or {}
    refs = [get(e, "configMapRef.name") for e in c.get("envFrom") or []]
    need(cm["metadata"]["name"] in refs, deploy, "containers[0].envFrom", "must load the generated settings")
    ports = {port.get("name"): str(port.get("containerPort")) for port in c.get("ports") or []}
    for setting, port in (("PORT", "http"), ("GRPC_PORT", "grpc")):
        need(config.get(setting) == ports.get(port), cm, f"data.{setting}", f"the container's port {port}")
    sleep = get(c, "lifecycle.preStop.sleep.seconds") or 0
    grace = float(config.get("GRACEFUL_SHUTDOWN_SECONDS", "0"))
    need(
        (pod.get("terminationGracePeriodSeconds") or 0) > sleep + grace,
        deploy,
        "spec.template.spec.terminationGracePeriodSeconds",
        f"must exceed preStop sleep ({sleep}s) + GRACEFUL_SHUTDOWN_SECONDS ({grace:g}s)",
    )
    digest = c["image"].partition("@")[2]
    revision = config.get("APP_REVISION", "")
    need(
        (revision, digest == UNRELEASED_DIGEST) == ("unreleased", True)
        or (bool(COMMIT.match(revision)) and digest != UNRELEASED_DIGEST),
        cm,
        "data.APP_REVISION",
        f"{revision!r}: a released digest's commit (40 hex digits), or 'unreleased' with the zero digest",
    )
    token_file = config.get("AUTH_TOKEN_FILE")
    if env != "dev":  # dev serves without tokens (CKV_MS_24)
        mounts = [m for m in c.get("volumeMounts") or [] if str(token_file).startswith(m["mountPath"] + "/")]
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        secret = get(volumes.get(mounts[0]["name"]) if mounts else None, "secret") or {}
        need(
            len(mounts) == 1
            and mounts[0].get("readOnly") is True
            and secret.get("secretName") == f"{service}-api-tokens"
            and secret.get("optional") is False
            and token_file == f"{mounts[0]['mountPath']}/{(secret.get('items') or [{}])[0].get('path')}",
            cm,
            "data.AUTH_TOKEN_FILE",
            f"a file of a read-only mount of the service's own required Secret, {service}-api-tokens",
        )

    # Who may reach the pods, and on which of their ports (the other objects' pods by their labels).
    ingress = get(np, "spec.ingress") or []
    ports_by_peers = {
        tuple(sorted(peer_names(peer) for peer in rule.get("from") or [{}])): [
            (q.get("port"), q.get("protocol", "TCP")) for q in rule.get("ports") or []
        ]
        for rule in ingress
    }
    need(
        ports_by_peers == {(GATEWAY,): [("http", "TCP"), ("grpc", "TCP")], (MONITORING,): [("http", "TCP")]},
        np,
        "spec.ingress",
        f"only the gateway's pods {GATEWAY} on ports http and grpc, and {MONITORING[0]}'s on http",
    )
    peers = [peer_names(peer) for rule in get(np, "spec.egress") or [] for peer in rule.get("to") or [{}]]
    need(peers == [DNS], np, "spec.egress[].to", f"only the cluster's DNS pods {DNS}")

    # The gateway's routes: under the service's ROOT_PATH, to its Service, within its body limit.
    need(config.get("ROOT_PATH") == f"/{service}", cm, "data.ROOT_PATH", f"must be /{service}")
    rest = only(objs, "Ingress", where, lambda name: not name.endswith("-grpc"))
    grpc = only(objs, "Ingress", where, lambda name: name.endswith("-grpc"))
    rest_paths = [path for rule in get(rest, "spec.rules") or [] for path in get(rule, "http.paths") or []]
    need(
        all(str(path.get("path")).startswith(f"{config.get('ROOT_PATH')}/") for path in rest_paths),
        rest,
        "spec.rules[0].http.paths",
        "under the service's ROOT_PATH",
    )
    rest_host = get(rest, "spec.rules")[0].get("host")
    hosts = [rule.get("host") for rule in get(grpc, "spec.rules") or []]
    need(hosts == [f"{service}.{rest_host}"], grpc, "spec.rules[].host", f"{service}.{rest_host}")
    for ing in (rest, grpc):
        paths = [path for rule in get(ing, "spec.rules") or [] for path in get(rule, "http.paths") or []]
        backends = {get(path, "backend.service.name") for path in paths}
        need(backends == {svc["metadata"]["name"]}, ing, "spec.rules[].http.paths[].backend", "the Service")
        size = (get(ing, "metadata.annotations") or {}).get("nginx.ingress.kubernetes.io/proxy-body-size", "")
        need(
            nginx_size(size) == int(config["MAX_BODY_BYTES"]),
            ing,
            "metadata.annotations[nginx.ingress.kubernetes.io/proxy-body-size]",
            f"must be MAX_BODY_BYTES ({config['MAX_BODY_BYTES']})",
        )

    if env == "prod":
        hpa = only(objs, "HorizontalPodAutoscaler", where)
        target = {
            "apiVersion": argo_rollouts.API_VERSION,
            "kind": "Rollout",
            "name": deploy["metadata"]["name"],
        }
        need(get(hpa, "spec.scaleTargetRef") == target, hpa, "spec.scaleTargetRef", "the service's Rollout")
        need(
            (get(pdb, "spec.minAvailable") or 0) < (get(hpa, "spec.minReplicas") or 1),
            pdb,
            "spec.minAvailable",
            "must be below the HPA's minReplicas, or no pod could ever be evicted",
        )
    return failures


@pytest.mark.parametrize(("service", "env"), OVERLAYS)
def test_objects_agree(service: str, env: str) -> None:
    failures = relations(render(service, env), service, env)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_service_of_an_environment_shares_its_one_host(env: str) -> None:
    hosts = {
        service: [
            rule.get("host")
            for rule in get(
                only(render(service, env), "Ingress", env, lambda n: not n.endswith("-grpc")), "spec.rules"
            )
        ]
        for service in SERVICES
    }
    assert len({tuple(h) for h in hosts.values()}) == 1 and all(len(h) == 1 for h in hosts.values()), hosts


def test_a_release_pins_the_digest_and_the_commit(tmp_path: Path) -> None:
    tree = tmp_path / "k8s"
    shutil.copytree(K8S_ROOT, tree)
    digest = "sha256:" + "4f" * 32
    commit = "0123456789abcdef0123456789abcdef01234567"
    image = f"registry.example:5000/team/modelserving-titanic@{digest}"
    done = release(tree, "titanic", "prod", image, commit)
    assert done.returncode == 0, done.stderr
    objs = render("titanic", "prod", tree)
    (container,) = only(objs, "Deployment", "release")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == image
    assert settings_of(objs, "titanic", "release")["data"]["APP_REVISION"] == commit
    failures = relations(objs, "titanic", "prod")
    assert not failures, failures
    assert render("titanic", "staging", tree) == render("titanic", "staging"), "only that overlay changes"


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        (
            ("titanic", "prod", "modelserving-titanic:latest", "0" * 40),
            "is not <image>@sha256:<64 hex digits>",
        ),
        (
            ("titanic", "prod", "modelserving-titanic@sha256:abc", "0" * 40),
            "is not <image>@sha256:<64 hex digits>",
        ),
        (("titanic", "prod", "modelserving-iris@sha256:" + "a" * 64, "0" * 40), "is not an image of titanic"),
        (("titanic", "prod", "modelserving-titanic@sha256:" + "a" * 64, "main"), "is not a full git commit"),
        (("titanic", "qa", "modelserving-titanic@sha256:" + "a" * 64, "0" * 40), "no overlay"),
    ],
)
def test_a_release_refuses_what_is_not_one(tmp_path: Path, arguments: tuple[str, ...], error: str) -> None:
    tree = tmp_path / "k8s"
    shutil.copytree(K8S_ROOT, tree)
    refused = release(tree, *arguments)
    assert refused.returncode == 2 and error in refused.stderr, refused.stderr
    assert render("titanic", "prod", tree) == render("titanic", "prod"), "nothing written"
