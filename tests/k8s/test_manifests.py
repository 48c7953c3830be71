"""Kubernetes manifests (issue #5), validated offline.

For every overlay of every service under k8s/: it renders with `kubectl kustomize`; every
rendered object validates strictly against the official Kubernetes OpenAPI schemas
(kubernetes-validate); and the policy checks below hold: the Pod Security Standards
*restricted* profile field by field, plus this repo's rules (the namespace's admission labels,
probes, named port, resources, preStop sleep, ServiceAccount, default-deny and the model's
NetworkPolicy, PDB, HPA, spread, Ingress, auth, and images by digest with APP_REVISION).
`k8s/release` is tested on a copy of the tree.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore  # no type information shipped
import pytest

from k8s.overlays import ENVIRONMENTS, K8S_ROOT, OVERLAYS, SERVICES, Obj, Rendered, release, render

K8S_VERSION = "1.32"  # the kubectl on the machines, and the oldest cluster supported
UID = GID = 1001  # the image's USER (pants-plugins/macros.py)
CONTAINER_PORT = 8000  # the image's PORT and EXPOSE
GRPC_CONTAINER_PORT = 8081  # the image's GRPC_PORT and EXPOSE
GRPC_BACKEND = "nginx.ingress.kubernetes.io/backend-protocol"

# Checks deliberately skipped, by id, each with its reason. Every other check runs.
ALLOW_LIST: dict[str, str] = {}
UNRELEASED_DIGEST = "sha256:" + "0" * 64  # what a committed overlay holds until k8s/release pins one
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
GATEWAY = ("ingress-nginx", "ingress-nginx")  # the ingress controller's namespace and pod name label
MONITORING_NAMESPACE = "monitoring"
CLUSTER_SCOPED = {"Namespace"}

# PSS restricted: the only volume types allowed.
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


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


_QUANTITY = re.compile(r"^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_FACTORS = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def quantity(value: str | int | float) -> float:
    match = _QUANTITY.match(str(value))
    assert match, f"unsupported resource quantity {value!r}"
    return float(match.group(1)) * _FACTORS[match.group(2)]


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
    if env == "prod":
        expected.append("HorizontalPodAutoscaler")
    assert kinds == sorted(expected), f"{service}/{env}: rendered kinds {kinds}, expected {sorted(expected)}"


@pytest.mark.parametrize(("service", "env"), OVERLAYS)
def test_schema_strict(service: str, env: str) -> None:
    errors = []
    for obj in render(service, env):
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{service}/{env}: {obj['kind']}/{obj['metadata']['name']}: {path}: {e.message}")
    assert not errors, "schema (Kubernetes " + K8S_VERSION + ", strict):\n" + "\n".join(errors)


class Policy:
    """Collects every failed check of one overlay, so one run names them all."""

    def __init__(self, service: str, env: str) -> None:
        self.where = f"{service}/{env}"
        self.failures: list[str] = []
        self.ran: set[str] = set()

    def check(self, check_id: str, ok: bool, obj: Obj, field: str, message: str) -> None:
        self.ran.add(check_id)
        if check_id in ALLOW_LIST or ok:
            return
        name = f"{obj['kind']}/{get(obj, 'metadata.name')}"
        self.failures.append(f"{self.where}: {name}: {field}: {message} [{check_id}]")


def pod_checks(p: Policy, deploy: Obj, env: str) -> None:
    pod = deploy["spec"]["template"]["spec"]
    d = deploy
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        p.check(f"pod-{host}", not pod.get(host), d, f"spec.template.spec.{host}", "must be unset or false")
    sc = pod.get("securityContext") or {}
    f = "spec.template.spec.securityContext"
    p.check("pod-runAsNonRoot", sc.get("runAsNonRoot") is True, d, f + ".runAsNonRoot", "must be true")
    p.check("pod-runAsUser", sc.get("runAsUser") == UID, d, f + ".runAsUser", f"must be {UID} (the image's)")
    p.check("pod-runAsGroup", sc.get("runAsGroup") == GID, d, f + ".runAsGroup", f"must be {GID}")
    p.check("pod-fsGroup", sc.get("fsGroup") == GID, d, f + ".fsGroup", f"must be {GID}")
    p.check(
        "pod-seccomp",
        get(sc, "seccompProfile.type") == "RuntimeDefault",
        d,
        f + ".seccompProfile.type",
        "must be RuntimeDefault",
    )
    p.check("pod-sysctls", not sc.get("sysctls"), d, f + ".sysctls", "must be empty")
    p.check(
        "pod-windows-hostProcess",
        not get(sc, "windowsOptions.hostProcess"),
        d,
        f + ".windowsOptions.hostProcess",
        "must be unset",
    )
    for volume in pod.get("volumes") or []:
        types = set(volume) - {"name"}
        p.check(
            "pod-volume-types",
            types <= RESTRICTED_VOLUME_TYPES,
            d,
            f"spec.template.spec.volumes[{volume['name']}]",
            f"type {sorted(types)} not allowed by the restricted profile",
        )
    p.check(
        "pod-automount-token",
        pod.get("automountServiceAccountToken") is False,
        d,
        "spec.template.spec.automountServiceAccountToken",
        "must be false",
    )
    p.check(
        "pod-own-serviceaccount",
        pod.get("serviceAccountName") not in (None, "", "default"),
        d,
        "spec.template.spec.serviceAccountName",
        "must name the service's own ServiceAccount",
    )
    labels = get(deploy, "spec.template.metadata.labels") or {}
    spreads = [
        t
        for t in pod.get("topologySpreadConstraints") or []
        if t.get("topologyKey") == "kubernetes.io/hostname"
        and (get(t, "labelSelector.matchLabels") or {}).items() <= labels.items()
        and get(t, "labelSelector.matchLabels")
    ]
    p.check(
        "pod-topology-spread",
        bool(spreads),
        d,
        "spec.template.spec.topologySpreadConstraints",
        "must spread the service's pods across kubernetes.io/hostname",
    )
    if env == "prod":
        p.check(
            "pod-spread-prod-strict",
            any(
                t.get("maxSkew") == 1
                and t.get("whenUnsatisfiable") == "DoNotSchedule"
                and t.get("nodeTaintsPolicy") == "Honor"
                for t in spreads
            ),
            d,
            "spec.template.spec.topologySpreadConstraints",
            "prod pods never share a node while another schedulable node has none of them",
        )
    for c in pod.get("initContainers") or []:
        p.check("pod-no-init", False, d, f"initContainers[{c['name']}]", "not expected (emptyDir needs none)")


def container_checks(p: Policy, deploy: Obj, c: Obj, service: str, cm: Obj) -> None:
    config = cm.get("data") or {}
    d = deploy
    pod = deploy["spec"]["template"]["spec"]
    f = f"containers[{c['name']}]"
    sc = c.get("securityContext") or {}
    s = f + ".securityContext"
    p.check(
        "ctr-allowPrivilegeEscalation",
        sc.get("allowPrivilegeEscalation") is False,
        d,
        s + ".allowPrivilegeEscalation",
        "must be false",
    )
    p.check("ctr-privileged", sc.get("privileged") in (None, False), d, s + ".privileged", "must not be true")
    p.check(
        "ctr-readOnlyRootFilesystem",
        sc.get("readOnlyRootFilesystem") is True,
        d,
        s + ".readOnlyRootFilesystem",
        "must be true",
    )
    p.check("ctr-runAsNonRoot", sc.get("runAsNonRoot") in (None, True), d, s + ".runAsNonRoot", "not false")
    p.check("ctr-runAsUser", sc.get("runAsUser") in (None, UID), d, s + ".runAsUser", f"unset or {UID}")
    p.check("ctr-runAsGroup", sc.get("runAsGroup") in (None, GID), d, s + ".runAsGroup", f"unset or {GID}")
    p.check(
        "ctr-capabilities-drop",
        "ALL" in (get(sc, "capabilities.drop") or []),
        d,
        s + ".capabilities.drop",
        "must include ALL",
    )
    p.check(
        "ctr-capabilities-add", not get(sc, "capabilities.add"), d, s + ".capabilities.add", "must be empty"
    )
    p.check(
        "ctr-seccomp",
        get(sc, "seccompProfile.type") in (None, "RuntimeDefault"),
        d,
        s + ".seccompProfile.type",
        "unset (pod's) or RuntimeDefault",
    )
    p.check(
        "ctr-procMount", sc.get("procMount") in (None, "Default"), d, s + ".procMount", "unset or Default"
    )

    ports = c.get("ports") or []
    for name, number in (("http", CONTAINER_PORT), ("grpc", GRPC_CONTAINER_PORT)):
        named = [port for port in ports if port.get("name") == name]
        p.check(
            f"ctr-port-{name}",
            len(named) == 1 and named[0].get("containerPort") == number,
            d,
            f + ".ports",
            f"one port named {name} on {number}",
        )
    p.check(
        "ctr-no-hostPort", not any(port.get("hostPort") for port in ports), d, f + ".ports", "no hostPort"
    )
    for probe, path in (("startupProbe", "/readyz"), ("livenessProbe", "/livez")):
        p.check(
            f"ctr-{probe}",
            get(c, f"{probe}.httpGet.path") == path and get(c, f"{probe}.httpGet.port") == "http",
            d,
            f"{f}.{probe}.httpGet",
            f"must GET {path} on port http",
        )
    grpc_port = next((port.get("containerPort") for port in ports if port.get("name") == "grpc"), None)
    p.check(
        "ctr-readinessProbe",
        get(c, "readinessProbe.grpc.port") == grpc_port and not get(c, "readinessProbe.grpc.service"),
        d,
        f"{f}.readinessProbe.grpc",
        f"must check the gRPC health service on the grpc port ({grpc_port})",
    )
    res = c.get("resources") or {}
    for kind in ("requests", "limits"):
        for name in ("cpu", "memory"):
            p.check(
                f"ctr-resources-{kind}",
                name in (res.get(kind) or {}),
                d,
                f"{f}.resources.{kind}.{name}",
                "must be set",
            )
    for name in ("cpu", "memory"):
        request, limit = get(res, f"requests.{name}"), get(res, f"limits.{name}")
        if request is not None and limit is not None:
            p.check(
                "ctr-requests-within-limits",
                quantity(request) <= quantity(limit),
                d,
                f"{f}.resources.requests.{name}",
                f"{request} exceeds the limit {limit}",
            )

    prestop = get(c, "lifecycle.preStop") or {}
    sleep = get(prestop, "sleep.seconds")
    p.check(
        "ctr-preStop-sleep",
        isinstance(sleep, int) and sleep > 0 and set(prestop) == {"sleep"},
        d,
        f + ".lifecycle.preStop",
        "must be a sleep action only (the image has no shell for exec)",
    )
    grace = float(config.get("GRACEFUL_SHUTDOWN_SECONDS", "0"))
    p.check(
        "pod-terminationGracePeriod",
        (pod.get("terminationGracePeriodSeconds") or 0) > (sleep or 0) + grace,
        d,
        "spec.template.spec.terminationGracePeriodSeconds",
        f"must exceed preStop sleep ({sleep}s) + GRACEFUL_SHUTDOWN_SECONDS ({grace:g}s)",
    )

    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    p.check(
        "ctr-tmp-emptyDir",
        "emptyDir" in volumes.get(mounts.get("/tmp", ""), {}),
        d,
        f + ".volumeMounts[/tmp]",
        "/tmp must be an emptyDir",
    )

    image = c.get("image", "")
    name, _, digest = image.partition("@")
    p.check(
        "ctr-image-name", name.endswith(f"modelserving-{service}"), d, f + ".image", f"{image!r} not Pants'"
    )
    p.check(
        "image-pinned-by-digest",
        bool(DIGEST.match(digest)) and ":" not in name.rpartition("/")[2],
        d,
        f + ".image",
        f"{image!r}: a release names its image by digest alone, never by a tag (tags move)",
    )
    revision = config.get("APP_REVISION", "")
    p.check(
        "ctr-app-revision",
        (revision, digest == UNRELEASED_DIGEST) == ("unreleased", True)
        or (bool(COMMIT.match(revision)) and digest != UNRELEASED_DIGEST),
        cm,
        "data.APP_REVISION",
        f"{revision!r}: a released digest's commit (40 hex digits), or 'unreleased' with the zero digest",
    )
    refs = [get(e, "configMapRef.name") for e in c.get("envFrom") or []]
    p.check(
        "ctr-envFrom-config",
        cm["metadata"]["name"] in refs,
        d,
        f + ".envFrom",
        "must load the generated ConfigMap",
    )


def service_checks(p: Policy, objs: Rendered, service: str, env: str) -> None:
    where = p.where
    deploy = only(objs, "Deployment", where)
    selector = get(deploy, "spec.selector.matchLabels") or {}
    labels = get(deploy, "spec.template.metadata.labels") or {}
    p.check(
        "deploy-selector",
        bool(selector)
        and selector.items() <= labels.items()
        and selector.get("app.kubernetes.io/name") == service,
        deploy,
        "spec.selector.matchLabels",
        "must select the pod template by app.kubernetes.io/name",
    )
    namespace = f"modelserving-{env}"
    for obj in objs:
        if obj["kind"] not in CLUSTER_SCOPED:
            p.check(
                "namespace",
                get(obj, "metadata.namespace") == namespace,
                obj,
                "metadata.namespace",
                f"must be {namespace}",
            )
    ns = only(objs, "Namespace", where)
    p.check("ns-name", ns["metadata"]["name"] == namespace, ns, "metadata.name", f"must be {namespace}")
    labels = get(ns, "metadata.labels") or {}
    for mode in ("enforce", "audit", "warn"):
        key = f"pod-security.kubernetes.io/{mode}"
        p.check(
            f"ns-psa-{mode}",
            labels.get(key) == "restricted" and labels.get(f"{key}-version") == f"v{K8S_VERSION}",
            ns,
            f"metadata.labels[{key}]",
            f"must be restricted, at version v{K8S_VERSION}",
        )

    cm = settings_of(objs, service, where)
    config = cm.get("data") or {}
    p.check("config-environment", config.get("ENVIRONMENT") == env, cm, "data.ENVIRONMENT", f"must be {env}")
    p.check(
        "config-log-level",
        config.get("LOG_LEVEL") in ("critical", "error", "warning", "info", "debug"),
        cm,
        "data.LOG_LEVEL",
        "must be a level modelserving accepts",
    )
    p.check("config-port", config.get("PORT") == str(CONTAINER_PORT), cm, "data.PORT", "must match port http")
    p.check(
        "config-grpc-port",
        config.get("GRPC_PORT") == str(GRPC_CONTAINER_PORT),
        cm,
        "data.GRPC_PORT",
        "must match port grpc",
    )

    pod_checks(p, deploy, env)
    containers = deploy["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{where}: expected one container, got {len(containers)}"
    container_checks(p, deploy, containers[0], service, cm)

    sa = only(objs, "ServiceAccount", where)
    p.check(
        "sa-name",
        sa["metadata"]["name"] == get(deploy, "spec.template.spec.serviceAccountName"),
        sa,
        "metadata.name",
        "must be the Deployment's serviceAccountName",
    )
    p.check("sa-automount", sa.get("automountServiceAccountToken") is False, sa, "automount...Token", "false")

    svc = only(objs, "Service", where)
    p.check(
        "svc-selector", get(svc, "spec.selector") == selector, svc, "spec.selector", "Deployment's selector"
    )
    p.check(
        "svc-targetPort",
        [port.get("targetPort") for port in get(svc, "spec.ports") or []] == ["http", "grpc"],
        svc,
        "spec.ports[].targetPort",
        "must be the named ports http and grpc",
    )
    p.check(
        "svc-grpc-appProtocol",
        [port.get("appProtocol") for port in get(svc, "spec.ports") or [] if port.get("targetPort") == "grpc"]
        == ["grpc"],
        svc,
        "spec.ports[grpc].appProtocol",
        "must be grpc",
    )

    pdb = only(objs, "PodDisruptionBudget", where)
    p.check(
        "pdb-selector",
        get(pdb, "spec.selector.matchLabels") == selector,
        pdb,
        "spec.selector.matchLabels",
        "must be the Deployment's selector",
    )

    deny = only(objs, "NetworkPolicy", where, lambda name: name == "default-deny")
    p.check(
        "netpol-default-deny",
        get(deny, "spec.podSelector") == {}
        and sorted(get(deny, "spec.policyTypes") or []) == ["Egress", "Ingress"]
        and not get(deny, "spec.ingress")
        and not get(deny, "spec.egress"),
        deny,
        "spec",
        "the namespace's default: every pod, no traffic in or out",
    )
    np = only(objs, "NetworkPolicy", where, lambda name: name != "default-deny")
    p.check(
        "netpol-selector",
        get(np, "spec.podSelector.matchLabels") == selector,
        np,
        "spec.podSelector",
        "must be the Deployment's selector",
    )
    p.check(
        "netpol-types",
        sorted(get(np, "spec.policyTypes") or []) == ["Egress", "Ingress"],
        np,
        "spec.policyTypes",
        "must be Ingress and Egress",
    )
    ingress = get(np, "spec.ingress") or []
    ports_by_peers = {
        tuple(sorted(peer_names(peer) for peer in rule.get("from") or [{}])): [
            (q.get("port"), q.get("protocol", "TCP")) for q in rule.get("ports") or []
        ]
        for rule in ingress
    }
    p.check(
        "netpol-ingress-ports",
        ports_by_peers
        == {
            (GATEWAY,): [("http", "TCP"), ("grpc", "TCP")],
            ((MONITORING_NAMESPACE, None),): [("http", "TCP")],
        },
        np,
        "spec.ingress",
        "the gateway on TCP ports http and grpc, monitoring on http only",
    )
    peers = [peer for rule in ingress for peer in rule.get("from") or [{}]]
    p.check(
        "netpol-ingress-from-gateway-and-monitoring",
        sorted(peer_names(peer) for peer in peers) == sorted([GATEWAY, (MONITORING_NAMESPACE, None)]),
        np,
        "spec.ingress[].from",
        f"only the gateway's pods ({GATEWAY}) and the {MONITORING_NAMESPACE} namespace",
    )
    egress = get(np, "spec.egress") or []
    p.check(
        "netpol-egress-dns-only",
        bool(egress)
        and all(
            rule.get("ports")
            and {(q.get("port"), q.get("protocol", "TCP")) for q in rule["ports"]}
            <= {(53, "UDP"), (53, "TCP")}
            and [peer_names(peer) for peer in rule.get("to") or [{}]] == [("kube-system", "kube-dns")]
            for rule in egress
        ),
        np,
        "spec.egress",
        "only to the cluster DNS (kube-system's kube-dns pods), port 53",
    )
    rest_ingress = only(objs, "Ingress", where, lambda name: not name.endswith("-grpc"))
    ingress_checks(p, rest_ingress, service, env, config, svc)
    grpc_ingress_checks(
        p,
        only(objs, "Ingress", where, lambda name: name.endswith("-grpc")),
        service,
        env,
        config,
        svc,
        rest_ingress,
    )

    hpas = [obj for obj in objs if obj["kind"] == "HorizontalPodAutoscaler"]
    if env == "prod":
        hpa = only(objs, "HorizontalPodAutoscaler", where)
        p.check("hpa-api", hpa["apiVersion"] == "autoscaling/v2", hpa, "apiVersion", "must be autoscaling/v2")
        p.check(
            "hpa-target",
            get(hpa, "spec.scaleTargetRef")
            == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deploy["metadata"]["name"]},
            hpa,
            "spec.scaleTargetRef",
            "must be the service's Deployment",
        )
        p.check("hpa-min", (get(hpa, "spec.minReplicas") or 1) >= 2, hpa, "spec.minReplicas", "must be >= 2")
        p.check(
            "hpa-cpu",
            [get(m, "resource.name") for m in get(hpa, "spec.metrics") or [] if m.get("type") == "Resource"]
            == ["cpu"],
            hpa,
            "spec.metrics",
            "must scale on CPU",
        )
        p.check(
            "deploy-replicas-from-hpa",
            "replicas" not in deploy["spec"],
            deploy,
            "spec.replicas",
            "prod's replica count is the HPA's: an apply must not scale it back",
        )
        p.check(
            "hpa-scale-down-window",
            (get(hpa, "spec.behavior.scaleDown.stabilizationWindowSeconds") or 0) >= 60,
            hpa,
            "spec.behavior.scaleDown.stabilizationWindowSeconds",
            "must hold scale-downs for at least a minute",
        )
        p.check(
            "pdb-prod-min-available",
            get(pdb, "spec.minAvailable") == 1 and get(pdb, "spec.maxUnavailable") is None,
            pdb,
            "spec.minAvailable",
            "prod keeps one pod up: minAvailable 1",
        )
        p.check(
            "pdb-below-hpa-min",
            (get(pdb, "spec.minAvailable") or 0) < (get(hpa, "spec.minReplicas") or 1),
            pdb,
            "spec.minAvailable",
            "must be below the HPA's minReplicas, or no pod could ever be evicted",
        )
    else:
        p.check("hpa-prod-only", not hpas, deploy, "HorizontalPodAutoscaler", "only prod autoscales")
        p.check(
            "deploy-replicas",
            (get(deploy, "spec.replicas") or 0) >= 1,
            deploy,
            "spec.replicas",
            "must be set",
        )
    auth_checks(p, deploy, service, env, config)


def peer_names(peer: Obj) -> tuple[str | None, str | None]:
    """A NetworkPolicy peer as (namespace name, pod name label), None where it selects any."""
    namespace = get(peer, "namespaceSelector.matchLabels") or {}
    expressions = get(peer, "podSelector.matchExpressions") or []
    pods = {e["key"]: e["values"] for e in expressions if e.get("operator") == "In" and len(e["values"]) == 1}
    pod = (pods.get("app.kubernetes.io/name") or pods.get("k8s-app") or [None])[0]
    if get(peer, "podSelector.matchLabels") or len(pods) != len(expressions):
        pod = "<other selector>"
    return namespace.get("kubernetes.io/metadata.name"), pod


# What clients call, under a service's ROOT_PATH, after its predict route (paths[0]): nothing else.
CLIENT_PATHS = [
    ("/v2/models", "Prefix"),
    ("/docs", "Prefix"),
    ("/redoc", "Exact"),
    ("/openapi.json", "Exact"),
    ("/", "Exact"),
]
GRPC_CLIENT_METHODS = ["ModelInfer", "ModelMetadata", "ModelReady"]


def ingress_checks(p: Policy, ing: Obj, service: str, env: str, config: dict[str, str], svc: Obj) -> None:
    """The service's way in: one rule, only the routes clients call (its predict route, the
    protocol's model routes and the docs) under its ROOT_PATH, the Service's http port, the body
    limit the app enforces, and TLS in prod."""
    rules = get(ing, "spec.rules") or []
    paths = [path for rule in rules for path in get(rule, "http.paths") or []]
    routes = [(x.get("path"), x.get("pathType")) for x in paths]
    root = f"/{service}"
    p.check("ing-class", get(ing, "spec.ingressClassName") == "nginx", ing, "spec.ingressClassName", "nginx")
    p.check(
        "ing-root-path",
        config.get("ROOT_PATH") == root
        and len(rules) == 1
        and len(routes) == 1 + len(CLIENT_PATHS)
        and routes[0][1] == "Exact"
        and str(routes[0][0]).startswith(root + "/predict")
        and routes[1:] == [(root + path, kind) for path, kind in CLIENT_PATHS],
        ing,
        "spec.rules[0].http.paths",
        f"its predict route, then {[root + path for path, _ in CLIENT_PATHS]}: never metrics or probes",
    )
    p.check(
        "ing-backend",
        {str(get(x, "backend.service")) for x in paths}
        == {str({"name": svc["metadata"]["name"], "port": {"name": "http"}})},
        ing,
        "spec.rules[0].http.paths[].backend",
        "the service's Service, port http",
    )
    limit = get(ing, "metadata.annotations") or {}
    p.check(
        "ing-body-size",
        nginx_size(limit.get("nginx.ingress.kubernetes.io/proxy-body-size", ""))
        == int(config["MAX_BODY_BYTES"]),
        ing,
        "metadata.annotations[nginx.ingress.kubernetes.io/proxy-body-size]",
        f"must be MAX_BODY_BYTES ({config['MAX_BODY_BYTES']})",
    )
    hosts = [rule.get("host") for rule in rules]
    tls = get(ing, "spec.tls") or []
    if env == "prod":
        p.check(
            "ing-tls",
            len(tls) == 1 and tls[0].get("hosts") == hosts and bool(tls[0].get("secretName")),
            ing,
            "spec.tls",
            "prod serves its host over TLS, the certificate from a Secret",
        )


def grpc_ingress_checks(
    p: Policy, ing: Obj, service: str, env: str, config: dict[str, str], svc: Obj, rest: Obj
) -> None:
    """The gRPC API's way in: HTTP/2 to the Service's grpc port, the model's RPCs on a host of the
    service's own (<service>.<the REST host>), the same body limit, and TLS in prod."""
    rules = get(ing, "spec.rules") or []
    paths = [path for rule in rules for path in get(rule, "http.paths") or []]
    annotations = get(ing, "metadata.annotations") or {}
    p.check(
        "grpc-ing-class", get(ing, "spec.ingressClassName") == "nginx", ing, "spec.ingressClassName", "nginx"
    )
    p.check(
        "grpc-ing-backend-protocol",
        annotations.get(GRPC_BACKEND) == "GRPC",
        ing,
        f"metadata.annotations[{GRPC_BACKEND}]",
        "GRPC: nginx speaks HTTP/2 to the pods",
    )
    rest_host = get(rest, "spec.rules")[0].get("host")
    hosts = [rule.get("host") for rule in rules]
    p.check(
        "grpc-ing-host",
        hosts == [f"{service}.{rest_host}"],
        ing,
        "spec.rules[].host",
        f"{service}.{rest_host}",
    )
    backend = {"name": svc["metadata"]["name"], "port": {"name": "grpc"}}
    p.check(
        "grpc-ing-route",
        [(x.get("path"), x.get("pathType"), get(x, "backend.service")) for x in paths]
        == [
            (f"/inference.GRPCInferenceService/{method}", "Exact", backend) for method in GRPC_CLIENT_METHODS
        ],
        ing,
        "spec.rules[0].http.paths",
        f"only the model's RPCs ({', '.join(GRPC_CLIENT_METHODS)}) to the Service's grpc port",
    )
    p.check(
        "grpc-ing-body-size",
        nginx_size(annotations.get("nginx.ingress.kubernetes.io/proxy-body-size", ""))
        == int(config["MAX_BODY_BYTES"]),
        ing,
        "metadata.annotations[nginx.ingress.kubernetes.io/proxy-body-size]",
        f"must be MAX_BODY_BYTES ({config['MAX_BODY_BYTES']})",
    )
    if env == "prod":
        tls = get(ing, "spec.tls") or []
        p.check(
            "grpc-ing-tls",
            len(tls) == 1 and tls[0].get("hosts") == hosts and bool(tls[0].get("secretName")),
            ing,
            "spec.tls",
            "prod serves its gRPC host over TLS too",
        )


def nginx_size(value: str) -> int:
    """nginx's size syntax (`1m`, `512k`, `1048576`) in bytes; -1 if it is not one."""
    match = re.fullmatch(r"([0-9]+)([kKmMgG]?)", value)
    if not match:
        return -1
    return int(match.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]


def auth_checks(p: Policy, deploy: Obj, service: str, env: str, config: dict[str, str]) -> None:
    """Staging and prod require bearer tokens, from the service's own mounted Secret (never a
    literal); dev alone serves without them, and says so (ALLOW_UNAUTHENTICATED=true)."""
    pod = deploy["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env_vars = {e["name"]: e for e in c.get("env") or []}
    f = "spec.template.spec.containers[0]"
    p.check(
        "auth-no-literal-token",
        "AUTH_TOKEN" not in env_vars and "AUTH_TOKEN" not in config,
        deploy,
        f + ".env",
        "no token in the manifest",
    )
    token_file = config.get("AUTH_TOKEN_FILE")
    open_by_choice = config.get("ALLOW_UNAUTHENTICATED") == "true"
    if env == "dev":
        p.check(
            "auth-dev-open",
            token_file is None and open_by_choice,
            deploy,
            "ConfigMap data.ALLOW_UNAUTHENTICATED",
            "dev serves without tokens, on purpose: ALLOW_UNAUTHENTICATED=true and no AUTH_TOKEN_FILE",
        )
        return
    p.check(
        "auth-not-open",
        not open_by_choice,
        deploy,
        "ConfigMap data.ALLOW_UNAUTHENTICATED",
        f"{env} never serves without tokens",
    )
    mounts = [
        m for m in c.get("volumeMounts") or [] if token_file and token_file.startswith(m["mountPath"] + "/")
    ]
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    secret = get(volumes.get(mounts[0]["name"]) if mounts else None, "secret") or {}
    p.check(
        "auth-token-from-secret",
        len(mounts) == 1
        and mounts[0].get("readOnly") is True
        and secret.get("secretName") == f"{service}-api-tokens"
        and secret.get("optional") is False
        and token_file == f"{mounts[0]['mountPath']}/{secret['items'][0]['path']}",
        deploy,
        "ConfigMap data.AUTH_TOKEN_FILE",
        f"{env} reads tokens from a read-only mount of its own required Secret, {service}-api-tokens",
    )


@pytest.mark.parametrize(("service", "env"), OVERLAYS)
def test_policy(service: str, env: str) -> None:
    policy = Policy(service, env)
    service_checks(policy, render(service, env), service, env)
    unknown = set(ALLOW_LIST) - policy.ran
    assert not unknown, f"ALLOW_LIST names checks that do not exist: {sorted(unknown)}"
    assert not policy.failures, "policy:\n" + "\n".join(policy.failures)


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


def test_no_committed_overlay_names_a_mutable_image() -> None:
    for service, env in OVERLAYS:
        for obj in render(service, env):
            for container in get(obj, "spec.template.spec.containers") or []:
                image = container["image"]
                assert image.endswith("@" + UNRELEASED_DIGEST) or DIGEST.match(image.partition("@")[2]), image
                assert (
                    ":" not in image.partition("@")[0].rpartition("/")[2]
                ), f"{service}/{env}: tag in {image}"


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
    policy = Policy("titanic", "prod (released)")
    service_checks(policy, objs, "titanic", "prod")
    assert not policy.failures, policy.failures
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
