"""What the repo's custom checkov checks (CKV_MS_*, this directory) share: the base classes and
helpers. It defines no check itself.

checkov loads every module here with `--external-checks-dir k8s/policies` (k8s/checkov), in
checkov's own virtualenv, with this directory on sys.path: hence `from ms_base import ...`.
Each check looks at one rendered object at a time; rules that relate several objects (selectors,
ports and names agreeing across them) are tests/k8s/test_manifests.py's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.kubernetes.checks.resource.base_spec_check import BaseK8Check

Obj = dict[str, Any]

UID = GID = 1001  # the image's USER (build-support/macros.py)
HTTP_PORT = 8000  # the image's PORT and EXPOSE
GRPC_PORT = 8081  # the image's GRPC_PORT and EXPOSE
K8S_VERSION = "1.32"  # the oldest cluster supported, as tests/k8s validates against
GRPC_BACKEND = "nginx.ingress.kubernetes.io/backend-protocol"
NAMESPACE = re.compile(r"^modelserving-(dev|staging|prod)$")


def plain(value: Any) -> Any:
    """checkov's copy of a manifest as the manifest says it: without the line numbers checkov
    adds to every mapping (`__startline__`, `__endline__`)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k not in ("__startline__", "__endline__")}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def get(obj: Any, *path: str | int) -> Any:
    """The value at `path` (keys and list indices), or None where any part is missing."""
    for part in path:
        if isinstance(part, int) and isinstance(obj, list) and -len(obj) <= part < len(obj):
            obj = obj[part]
        elif isinstance(part, str) and isinstance(obj, dict):
            obj = obj.get(part)
        else:
            return None
    return obj


def mapping(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def items(value: Any) -> list[Obj]:
    """The mappings of a list (anything else in it, or a list that is not one, counts as none)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def annotations_of(obj: Obj) -> dict[str, str]:
    """metadata.annotations as a mapping: checkov hands them over as a list of mappings."""
    found = get(obj, "metadata", "annotations")
    merged: dict[str, str] = {}
    for part in found if isinstance(found, list) else [found]:
        merged.update(mapping(part))
    return merged


def environment(obj: Obj) -> str | None:
    """dev, staging or prod, from the object's namespace (`modelserving-<env>`); None elsewhere."""
    match = NAMESPACE.match(str(get(obj, "metadata", "namespace")))
    return match.group(1) if match else None


def labels_within(selector: Any, labels: Any) -> bool:
    """A non-empty label selector (matchLabels) that `labels` satisfy."""
    selector, labels = mapping(selector), mapping(labels)
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


class Check(BaseK8Check):
    """One rule over one object of the kinds in KINDS. `holds` says whether the object keeps
    it, or None where the rule does not apply to that object (checkov then reports nothing)."""

    ID: str
    NAME: str
    KINDS: tuple[str, ...]

    def __init__(self) -> None:
        super().__init__(
            name=self.NAME, id=self.ID, categories=[CheckCategories.KUBERNETES], supported_entities=self.KINDS
        )

    def scan_spec_conf(self, conf: Obj) -> CheckResult:
        verdict = self.holds(plain(conf))
        if verdict is None:
            return CheckResult.UNKNOWN
        return CheckResult.PASSED if verdict else CheckResult.FAILED

    def holds(self, obj: Obj) -> bool | None:
        raise NotImplementedError


class PodCheck(Check):
    """A rule over a Deployment's pod template (the only workload the overlays render)."""

    KINDS = ("Deployment",)

    def holds(self, obj: Obj) -> bool | None:
        pod = get(obj, "spec", "template", "spec")
        return self.pod_holds(pod, obj) if isinstance(pod, dict) else False

    def pod_holds(self, pod: Obj, obj: Obj) -> bool | None:
        raise NotImplementedError


class ContainerCheck(PodCheck):
    """A rule every container of the pod keeps (init containers too when INIT is true)."""

    INIT = True

    def pod_holds(self, pod: Obj, obj: Obj) -> bool | None:
        containers = items(pod.get("containers"))
        if self.INIT:
            containers += items(pod.get("initContainers"))
        return bool(containers) and all(self.container_holds(c, pod, obj) for c in containers)

    def container_holds(self, container: Obj, pod: Obj, obj: Obj) -> bool:
        raise NotImplementedError


def ports_of(container: Obj, name: str) -> Iterator[Any]:
    """The containerPort of each of the container's ports named `name`."""
    return (port.get("containerPort") for port in items(container.get("ports")) if port.get("name") == name)
