"""checkov's Kubernetes checks and the repo's own pass on every overlay, and each of the repo's
checks fails where its rule is broken (issues #17 and #25).

k8s/checkov installs the pinned checkov (3rdparty/checkov) on first use and runs it, with the
repo's custom checks (k8s/policies, CKV_MS_*), on the rendered overlays. Here it runs on a copy
of the tree where `k8s/release` has pinned every overlay, as CI does on a release; once with the
one skip taken out, to show that the checks run and that the skip is what lets the uid-1001
Deployment pass; and, for the custom checks, on every committed overlay beside copies of them
with one rule broken each (MUTATIONS): every custom check passes on every overlay, and fails on
each of its own mutations, and only there.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from k8s.overlays import K8S_ROOT, OVERLAYS, Obj, Rendered, release, render
from modelserving.dev.testing import yield_the_cpu

yield_the_cpu()  # this module installs checkov and runs it for minutes

REPO_ROOT = K8S_ROOT.parent
SKIP_ANNOTATION = re.compile(r"^ *checkov\.io/skip\d+: (CKV\w+)=.+$", re.MULTILINE)
CUSTOM_CHECK_ID = re.compile(r'^    ID = "(CKV_MS_\d+)"$', re.MULTILINE)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """A copy of k8s/ beside checkov's pins, as k8s/checkov finds them."""
    shutil.copytree(K8S_ROOT, tmp_path / "k8s")
    (tmp_path / "3rdparty" / "checkov").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "3rdparty" / "checkov" / "wheels.txt", tmp_path / "3rdparty" / "checkov")
    return tmp_path / "k8s"


def checkov(tree: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tree / "checkov"), *arguments], capture_output=True, text=True, check=False, timeout=900
    )


def counts(output: str) -> dict[str, int]:
    found = re.search(r"Passed checks: (\d+), Failed checks: (\d+), Skipped checks: (\d+)", output)
    assert found, f"no checkov summary in its output (stdout, then stderr):\n{output}"
    return dict(zip(("passed", "failed", "skipped"), map(int, found.groups()), strict=True))


def test_every_release_passes(tree: Path) -> None:
    for number, (service, env) in enumerate(OVERLAYS):
        digest = f"sha256:{number:064x}"
        commit = f"{number:040x}"
        done = release(tree, service, env, f"registry.example/modelserving-{service}@{digest}", commit)
        assert done.returncode == 0, done.stderr
    result = checkov(tree)
    summary = counts(result.stdout + result.stderr)
    assert result.returncode == 0 and summary["failed"] == 0, result.stdout + result.stderr
    assert summary["passed"] > 0
    # Only the reasoned skips, once per Deployment.
    skips = SKIP_ANNOTATION.findall((tree / "components" / "model-service" / "deployment.yaml").read_text())
    assert skips, "the Deployment's reasoned skip annotation is gone: update this test"
    assert summary["skipped"] == len(skips) * len(OVERLAYS), result.stdout


def test_a_check_without_its_reasoned_skip_fails(tree: Path) -> None:
    deployment = tree / "components" / "model-service" / "deployment.yaml"
    text = deployment.read_text()
    skipped = SKIP_ANNOTATION.findall(text)
    deployment.write_text(SKIP_ANNOTATION.sub("", text))
    result = checkov(tree, "titanic/overlays/prod")
    assert result.returncode != 0, result.stdout
    assert counts(result.stdout + result.stderr)["failed"] == len(skipped)
    for check in skipped:
        assert check in result.stdout


# A mutation is a committed overlay with one rule broken: JSON Patch operations on one of its
# objects, ("add" | "replace", path, value), ("remove", path) or ("copy", from, path).
Op = tuple[Any, ...]


@dataclass(frozen=True)
class Mutation:
    check: str  # the custom check it must fail, alone
    overlay: str  # <service>/<env>
    target: str  # Kind, or Kind/name without the service's prefix and the generated hash
    ops: tuple[Op, ...]

    def __str__(self) -> str:
        steps = ", ".join(f"{op[0]} {op[1]}" for op in self.ops)
        return f"{self.check} {self.overlay} {self.target}: {steps}"


def m(check: str, overlay: str, target: str, *ops: Op) -> Mutation:
    return Mutation(check, overlay, target, ops)


D = "Deployment"
P = "/spec/template/spec"  # its pod
C = f"{P}/containers/0"  # the pod's container
PSC, CSC = f"{P}/securityContext", f"{C}/securityContext"
SPREAD = f"{P}/topologySpreadConstraints/0"
CM, SA, PDB = "ConfigMap/model-config", "ServiceAccount", "PodDisruptionBudget"
HPA = "HorizontalPodAutoscaler"
NP, DENY = "NetworkPolicy/model", "NetworkPolicy/default-deny"
REST, GRPC = "Ingress/model", "Ingress/model-grpc"
PATHS = "/spec/rules/0/http/paths"
PSA = "/metadata/labels/pod-security.kubernetes.io~1"
DIGEST = "@sha256:" + "0" * 64
SERVER_LIVE = "/inference.GRPCInferenceService/ServerLive"  # the server's RPC: in the cluster only

MUTATIONS = [
    m("CKV_MS_1", "titanic/prod", D, ("add", f"{P}/hostNetwork", True)),
    m("CKV_MS_1", "iris/dev", D, ("add", f"{P}/hostPID", True)),
    m("CKV_MS_1", "diabetes/staging", D, ("add", f"{P}/hostIPC", True)),
    m("CKV_MS_2", "titanic/prod", D, ("replace", f"{PSC}/runAsNonRoot", False)),
    m("CKV_MS_2", "titanic/prod", D, ("replace", f"{PSC}/runAsUser", 0)),
    m("CKV_MS_2", "titanic/dev", D, ("replace", f"{PSC}/runAsGroup", 0)),
    m("CKV_MS_2", "iris/staging", D, ("remove", f"{PSC}/fsGroup")),
    m("CKV_MS_3", "titanic/prod", D, ("replace", f"{PSC}/seccompProfile/type", "Unconfined")),
    m("CKV_MS_3", "titanic/dev", D, ("add", f"{PSC}/sysctls", [{"name": "kernel.msgmax", "value": "1"}])),
    m("CKV_MS_3", "titanic/staging", D, ("add", f"{PSC}/windowsOptions", {"hostProcess": True})),
    m("CKV_MS_4", "titanic/prod", D, ("add", f"{P}/volumes/-", {"name": "host", "hostPath": {"path": "/"}})),
    m("CKV_MS_5", "titanic/prod", D, ("replace", f"{P}/automountServiceAccountToken", True)),
    m("CKV_MS_5", "titanic/staging", D, ("replace", f"{P}/serviceAccountName", "default")),
    m("CKV_MS_5", "iris/dev", D, ("remove", f"{P}/serviceAccountName")),
    m("CKV_MS_6", "titanic/staging", D, ("replace", f"{SPREAD}/topologyKey", "topology.kubernetes.io/zone")),
    m(
        "CKV_MS_6",
        "titanic/dev",
        D,
        ("replace", f"{SPREAD}/labelSelector/matchLabels/app.kubernetes.io~1name", "iris"),
    ),
    m("CKV_MS_6", "diabetes/dev", D, ("remove", f"{P}/topologySpreadConstraints")),
    m("CKV_MS_7", "titanic/prod", D, ("replace", f"{SPREAD}/whenUnsatisfiable", "ScheduleAnyway")),
    m("CKV_MS_7", "iris/prod", D, ("replace", f"{SPREAD}/maxSkew", 2)),
    m("CKV_MS_7", "diabetes/prod", D, ("remove", f"{SPREAD}/nodeTaintsPolicy")),
    m(
        "CKV_MS_8",
        "titanic/prod",
        D,
        ("add", f"{P}/initContainers", []),
        ("copy", C, f"{P}/initContainers/-"),
    ),
    m("CKV_MS_8", "titanic/dev", D, ("copy", C, f"{P}/containers/-")),
    m("CKV_MS_9", "titanic/prod", D, ("remove", "/spec/selector/matchLabels/app.kubernetes.io~1name")),
    m("CKV_MS_9", "iris/staging", D, ("add", "/spec/selector/matchLabels/track", "canary")),
    m("CKV_MS_10", "titanic/dev", D, ("remove", "/spec/replicas")),
    m("CKV_MS_10", "titanic/staging", D, ("replace", "/spec/replicas", 2)),
    m("CKV_MS_10", "titanic/prod", D, ("remove", "/spec/replicas")),
    m("CKV_MS_11", "titanic/prod", D, ("replace", f"{CSC}/allowPrivilegeEscalation", True)),
    m("CKV_MS_11", "iris/dev", D, ("replace", f"{CSC}/privileged", True)),
    m("CKV_MS_12", "titanic/prod", D, ("replace", f"{CSC}/capabilities/drop", ["NET_RAW"])),
    m("CKV_MS_12", "titanic/staging", D, ("add", f"{CSC}/capabilities/add", ["NET_BIND_SERVICE"])),
    m("CKV_MS_13", "titanic/prod", D, ("replace", f"{CSC}/readOnlyRootFilesystem", False)),
    m("CKV_MS_14", "titanic/prod", D, ("replace", f"{CSC}/runAsNonRoot", False)),
    m("CKV_MS_14", "titanic/dev", D, ("replace", f"{CSC}/runAsUser", 0)),
    m("CKV_MS_14", "diabetes/prod", D, ("replace", f"{CSC}/runAsGroup", 0)),
    m("CKV_MS_15", "titanic/prod", D, ("replace", f"{CSC}/seccompProfile/type", "Unconfined")),
    m("CKV_MS_15", "titanic/staging", D, ("add", f"{CSC}/procMount", "Unmasked")),
    m("CKV_MS_16", "titanic/prod", D, ("replace", f"{C}/ports/0/containerPort", 8080)),
    m(
        "CKV_MS_16",
        "titanic/prod",
        D,
        ("replace", f"{C}/ports/1/containerPort", 9090),
        ("replace", f"{C}/readinessProbe/grpc/port", 9090),  # as CKV_MS_17 wants
    ),
    m("CKV_MS_16", "iris/dev", D, ("add", f"{C}/ports/0/hostPort", 8000)),
    m("CKV_MS_17", "titanic/prod", D, ("replace", f"{C}/startupProbe/httpGet/path", "/livez")),
    m("CKV_MS_17", "titanic/prod", D, ("replace", f"{C}/livenessProbe/httpGet/port", "grpc")),
    m("CKV_MS_17", "titanic/dev", D, ("replace", f"{C}/readinessProbe/grpc/port", 8000)),
    m("CKV_MS_17", "iris/staging", D, ("add", f"{C}/readinessProbe/grpc/service", "inference")),
    m("CKV_MS_17", "diabetes/prod", D, ("remove", f"{C}/startupProbe")),
    m("CKV_MS_18", "titanic/prod", D, ("remove", f"{C}/resources/limits")),
    m("CKV_MS_18", "titanic/dev", D, ("remove", f"{C}/resources/requests/memory")),
    m("CKV_MS_18", "titanic/staging", D, ("replace", f"{C}/resources/requests/cpu", "4")),
    m("CKV_MS_18", "iris/prod", D, ("replace", f"{C}/resources/requests/memory", "4Gi")),
    m(
        "CKV_MS_19",
        "titanic/prod",
        D,
        ("replace", f"{C}/lifecycle/preStop", {"exec": {"command": ["sleep", "5"]}}),
    ),
    m("CKV_MS_19", "titanic/dev", D, ("replace", f"{C}/lifecycle/preStop/sleep/seconds", 0)),
    m("CKV_MS_19", "diabetes/staging", D, ("remove", f"{C}/lifecycle")),
    m("CKV_MS_20", "titanic/prod", D, ("remove", f"{C}/volumeMounts/0")),
    m(
        "CKV_MS_20",
        "titanic/dev",
        D,
        ("replace", f"{P}/volumes/0", {"name": "tmp", "configMap": {"name": "tmp"}}),
    ),
    m("CKV_MS_21", "titanic/prod", D, ("replace", f"{C}/image", "modelserving-titanic:latest")),
    m("CKV_MS_21", "titanic/prod", D, ("replace", f"{C}/image", "modelserving-iris" + DIGEST)),
    m(
        "CKV_MS_21",
        "iris/dev",
        D,
        ("replace", f"{C}/image", "registry.example/modelserving-iris:1.0" + DIGEST),
    ),
    m("CKV_MS_22", "titanic/prod", D, ("add", f"{C}/env", [{"name": "AUTH_TOKEN", "value": "secret"}])),
    m("CKV_MS_22", "titanic/staging", CM, ("add", "/data/AUTH_TOKEN", "secret")),
    m("CKV_MS_23", "titanic/staging", CM, ("replace", "/data/ENVIRONMENT", "prod")),
    m("CKV_MS_23", "iris/prod", CM, ("replace", "/data/LOG_LEVEL", "verbose")),
    m("CKV_MS_24", "titanic/dev", CM, ("replace", "/data/ALLOW_UNAUTHENTICATED", "false")),
    m(
        "CKV_MS_24",
        "titanic/dev",
        CM,
        ("add", "/data/AUTH_TOKEN_FILE", "/var/run/secrets/modelserving/tokens"),
    ),
    m("CKV_MS_24", "titanic/prod", CM, ("add", "/data/ALLOW_UNAUTHENTICATED", "true")),
    m("CKV_MS_24", "iris/staging", CM, ("remove", "/data/AUTH_TOKEN_FILE")),
    m("CKV_MS_25", "titanic/prod", SA, ("replace", "/automountServiceAccountToken", True)),
    m("CKV_MS_26", "titanic/prod", "Service/model", ("replace", "/spec/ports/0/targetPort", 8000)),
    m("CKV_MS_26", "iris/dev", "Service", ("remove", "/spec/ports/1/appProtocol")),
    m("CKV_MS_27", "titanic/prod", PDB, ("replace", "/spec/minAvailable", 0)),
    m(
        "CKV_MS_27",
        "iris/prod",
        PDB,
        ("remove", "/spec/minAvailable"),
        ("add", "/spec/maxUnavailable", 1),  # prod's base, which lets the last pod go
    ),
    m("CKV_MS_28", "titanic/prod", HPA, ("replace", "/spec/minReplicas", 1)),
    m("CKV_MS_28", "titanic/prod", HPA, ("replace", "/spec/metrics/1/resource/name", "memory")),
    m("CKV_MS_28", "iris/prod", HPA, ("replace", "/spec/behavior/scaleDown/stabilizationWindowSeconds", 30)),
    m("CKV_MS_28", "diabetes/prod", HPA, ("replace", "/apiVersion", "autoscaling/v1")),
    m("CKV_MS_28", "iris/prod", HPA, ("replace", "/metadata/namespace", "modelserving-staging")),
    m("CKV_MS_29", "titanic/prod", "Namespace", ("replace", f"{PSA}enforce", "baseline")),
    m("CKV_MS_29", "titanic/dev", "Namespace", ("replace", f"{PSA}audit-version", "latest")),
    m("CKV_MS_29", "iris/staging", "Namespace", ("remove", f"{PSA}warn")),
    m("CKV_MS_30", "titanic/prod", DENY, ("add", "/spec/podSelector/matchLabels", {"a": "b"})),
    m("CKV_MS_30", "titanic/dev", DENY, ("replace", "/spec/policyTypes", ["Ingress"])),
    m("CKV_MS_30", "iris/staging", DENY, ("add", "/spec/ingress", [{}])),
    m("CKV_MS_31", "titanic/prod", NP, ("replace", "/spec/policyTypes", ["Ingress"])),
    m("CKV_MS_31", "titanic/staging", NP, ("replace", "/spec/egress/0/ports/0/port", 443)),
    m("CKV_MS_31", "titanic/dev", NP, ("remove", "/spec/egress/0/ports")),
    m("CKV_MS_31", "iris/prod", NP, ("remove", "/spec/egress")),
    m("CKV_MS_32", "titanic/prod", REST, ("replace", "/spec/ingressClassName", "traefik")),
    m("CKV_MS_32", "iris/dev", GRPC, ("remove", "/spec/ingressClassName")),
    m(
        "CKV_MS_33",
        "titanic/prod",
        REST,
        ("copy", f"{PATHS}/1", f"{PATHS}/-"),
        ("replace", f"{PATHS}/6/path", "/titanic/metrics"),
    ),
    m("CKV_MS_33", "titanic/prod", REST, ("replace", f"{PATHS}/0/pathType", "Prefix")),
    m("CKV_MS_33", "titanic/dev", REST, ("replace", f"{PATHS}/2/backend/service/port/name", "grpc")),
    m("CKV_MS_33", "iris/staging", REST, ("replace", f"{PATHS}/1/path", "/titanic/v2/models")),
    m("CKV_MS_33", "diabetes/dev", REST, ("copy", "/spec/rules/0", "/spec/rules/-")),
    m(
        "CKV_MS_34",
        "titanic/prod",
        GRPC,
        ("remove", "/metadata/annotations/nginx.ingress.kubernetes.io~1backend-protocol"),
    ),
    m(
        "CKV_MS_34",
        "titanic/prod",
        GRPC,
        ("copy", f"{PATHS}/0", f"{PATHS}/-"),
        ("replace", f"{PATHS}/3/path", SERVER_LIVE),
    ),
    m("CKV_MS_34", "titanic/dev", GRPC, ("replace", f"{PATHS}/0/backend/service/port/name", "http")),
    m("CKV_MS_34", "iris/staging", GRPC, ("replace", f"{PATHS}/2/pathType", "Prefix")),
    m("CKV_MS_35", "titanic/prod", REST, ("remove", "/spec/tls")),
    m("CKV_MS_35", "iris/prod", GRPC, ("replace", "/spec/tls/0/hosts/0", "models.example.com")),
    m("CKV_MS_35", "diabetes/prod", REST, ("remove", "/spec/tls/0/secretName")),
    m(
        "CKV_MS_36",
        "titanic/prod",
        "NetworkPolicy/model-shadow",
        ("replace", "/spec/egress/0/ports/0/port", 443),
    ),
    m(
        "CKV_MS_36",
        "iris/staging",
        "NetworkPolicy/model-shadow",
        ("add", "/spec/egress/0/to/0/namespaceSelector", {}),
    ),
    m(
        "CKV_MS_36",
        "diabetes/prod",
        "NetworkPolicy/model-shadow",
        ("replace", "/spec/ingress/0/from/0/podSelector/matchExpressions/0/values/0", "iris"),
    ),
]


def pointer(path: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]


def at(obj: Any, parts: list[str]) -> Any:
    for part in parts:
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def patch(obj: Obj, op: Op) -> None:
    """One JSON Patch operation (RFC 6902: add, replace, remove, copy) on `obj`, in place."""
    kind, path, *rest = op
    if kind == "copy":
        kind, path, rest = "add", rest[0], [copy.deepcopy(at(obj, pointer(path)))]
    *parents, key = pointer(path)
    parent = at(obj, parents)
    if kind == "remove":
        del parent[int(key) if isinstance(parent, list) else key]
    elif isinstance(parent, list) and key == "-":
        parent.append(rest[0])
    elif isinstance(parent, list):
        assert kind == "replace", f"{op}: only replace in a list"
        parent[int(key)] = rest[0]
    else:
        present = key in parent
        assert present == (kind == "replace"), f"{op}: {key!r} is {'' if present else 'not '}there"
        parent[key] = rest[0]


def mutated(mutation: Mutation) -> Rendered:
    service, env = mutation.overlay.split("/")
    objs = copy.deepcopy(render(service, env))
    kind, _, name = mutation.target.partition("/")
    pattern = rf"({service}-)?{re.escape(name)}(-[a-z0-9]{{10}})?"
    (target,) = (
        o for o in objs if o["kind"] == kind and (not name or re.fullmatch(pattern, o["metadata"]["name"]))
    )
    for op in mutation.ops:
        patch(target, op)
    return objs


def base_file(overlay: str) -> str:
    return overlay.replace("/", "-") + ".yaml"


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, set[str]]]:
    """The custom checks' results in one checkov run over every committed overlay
    (`<service>-<env>.yaml`) and every mutation (`mutation-<n>.yaml`): file -> check -> results."""
    rendered = tmp_path_factory.mktemp("rendered")
    for service, env in OVERLAYS:
        (rendered / base_file(f"{service}/{env}")).write_text(yaml.safe_dump_all(render(service, env)))
    for number, mutation in enumerate(MUTATIONS):
        (rendered / f"mutation-{number}.yaml").write_text(yaml.safe_dump_all(mutated(mutation)))
    result = checkov(K8S_ROOT, "--rendered", str(rendered), "-o", "json", "--check", "CKV_MS_*")
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"checkov wrote no JSON report (exit {result.returncode}):\n{result.stdout}{result.stderr}"
        )
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for outcome in ("passed_checks", "failed_checks"):
        for verdict in report["results"][outcome]:
            file = Path(verdict["file_path"]).name
            found[file][verdict["check_id"]].add(verdict["check_result"]["result"])
    return found


def custom_checks() -> list[str]:
    return [
        check
        for path in (K8S_ROOT / "policies").glob("*.py")
        for check in CUSTOM_CHECK_ID.findall(path.read_text())
    ]


def test_every_custom_check_runs_and_has_its_mutations(verdicts: dict[str, dict[str, set[str]]]) -> None:
    checks = custom_checks()
    assert len(checks) == len(set(checks)), f"a custom check ID is taken twice: {sorted(checks)}"
    ran = {check for service, env in OVERLAYS for check in verdicts[base_file(f"{service}/{env}")]}
    assert ran == set(checks), f"checkov did not run (or load) {sorted(set(checks) - ran)}"
    mutated_checks = {mutation.check for mutation in MUTATIONS}
    assert mutated_checks == set(
        checks
    ), f"custom checks without a mutation: {sorted(set(checks) - mutated_checks)}"


@pytest.mark.parametrize(("service", "env"), OVERLAYS)
def test_every_custom_check_passes_on_every_overlay(
    verdicts: dict[str, dict[str, set[str]]], service: str, env: str
) -> None:
    found = verdicts[base_file(f"{service}/{env}")]
    assert found, f"{service}/{env}: no custom check ran"
    assert all(results == {"PASSED"} for results in found.values()), dict(found)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=str)
def test_a_custom_check_fails_on_its_rule_broken(
    verdicts: dict[str, dict[str, set[str]]], mutation: Mutation
) -> None:
    assert verdicts[base_file(mutation.overlay)][mutation.check] == {"PASSED"}, "passes unmutated"
    found = verdicts[f"mutation-{MUTATIONS.index(mutation)}.yaml"]
    failed = {check for check, results in found.items() if "FAILED" in results}
    assert failed == {mutation.check}, f"{mutation}: failed {sorted(failed)}, expected {mutation.check} alone"
