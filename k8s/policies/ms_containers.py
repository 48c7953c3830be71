"""Custom checkov checks CKV_MS_11 to CKV_MS_21: the model's container.

The restricted profile at container level (init containers too, should one ever appear), then
what the image needs and the app expects: its two named ports, its probes, bounded resources,
a preStop sleep (the image has no shell), /tmp on an emptyDir (the root is read-only), and the
service's own image by digest.
"""

from __future__ import annotations

import re

from ms_base import (
    GID,
    GRPC_PORT,
    HTTP_PORT,
    UID,
    ContainerCheck,
    Obj,
    get,
    items,
    ports_of,
)

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
FACTORS = {None: 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
FACTORS.update({"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40})


def quantity(value: object) -> float | None:
    """A Kubernetes resource quantity (`100m`, `1`, `512Mi`) as a number; None if it is not one."""
    match = QUANTITY.match(str(value))
    return float(match.group(1)) * FACTORS[match.group(2)] if match else None


class NoPrivilegeEscalation(ContainerCheck):
    ID = "CKV_MS_11"
    NAME = "Containers cannot gain privileges: allowPrivilegeEscalation false, privileged unset or false"

    def container_holds(self, container: Obj, pod: Obj, obj: Obj) -> bool:
        context = get(container, "securityContext")
        return get(context, "allowPrivilegeEscalation") is False and get(context, "privileged") in (
            None,
            False,
        )


class NoCapabilities(ContainerCheck):
    ID = "CKV_MS_12"
    NAME = "Containers drop ALL capabilities and add none"

    def container_holds(self, container: Obj, pod: Obj, obj: Obj) -> bool:
        capabilities = get(container, "securityContext", "capabilities")
        dropped = get(capabilities, "drop")
        return isinstance(dropped, list) and "ALL" in dropped and not get(capabilities, "add")


class ReadOnlyRoot(ContainerCheck):
    ID = "CKV_MS_13"
    NAME = "Containers run on a read-only root filesystem"

    def container_holds(self, container: Obj, pod: Obj, obj: Obj) -> bool:
        return get(container, "securityContext", "readOnlyRootFilesystem") is True


class ContainerRunsAsTheImagesUser(ContainerCheck):
    ID = "CKV_MS_14"
    NAME = (
        "Containers keep the pod's non-root user: runAsNonRoot not false, "
        f"runAsUser and runAsGroup unset or {UID}"
    )

    def container_holds(self, container: Obj, pod: Obj, obj: Obj) -> bool:
        context = get(container, "securityContext")
        return (
            get(context, "runAsNonRoot") in (None, True)
            and get(context, "runAsUser") in (None, UID)
            and get(context, "runAsGroup") in (None, GID)
        )


class ContainerSeccompAndProc(ContainerCheck):
    ID = "CKV_MS_15"
    NAME = "Containers keep the RuntimeDefault seccomp profile (or the pod's) and the Default /proc mount"

    def container_holds(self, container: Obj, pod: Obj, obj: Obj) -> bool:
        context = get(container, "securityContext")
        return get(context, "seccompProfile", "type") in (None, "RuntimeDefault") and get(
            context, "procMount"
        ) in (None, "Default")


class NamedPorts(ContainerCheck):
    ID = "CKV_MS_16"
    NAME = f"Containers name the image's ports: one http on {HTTP_PORT}, one grpc on {GRPC_PORT}; no hostPort"
    INIT = False

    def container_holds(self, container: Obj, pod: Obj, obj: Obj) -> bool:
        return (
            list(ports_of(container, "http")) == [HTTP_PORT]
            and list(ports_of(container, "grpc")) == [GRPC_PORT]
            and not any(port.get("hostPort") for port in items(container.get("ports")))
        )


class Probes(ContainerCheck):
    ID = "CKV_MS_17"
    NAME = (
        "Containers are probed where the app answers: startup GET /readyz and liveness GET /livez on "
        "port http, readiness by the gRPC health service (the server's, no service name) on port grpc"
    )
    INIT = False

    def container_holds(self, container: Obj, pod: Obj, obj: Obj) -> bool:
        grpc = next(ports_of(container, "grpc"), None)
        return (
            get(container, "startupProbe", "httpGet", "path") == "/readyz"
            and get(container, "startupProbe", "httpGet", "port") == "http"
            and get(container, "livenessProbe", "httpGet", "path") == "/livez"
            and get(container, "livenessProbe", "httpGet", "port") == "http"
            and grpc is not None
            and get(container, "readinessProbe", "grpc", "port") == grpc
            and not get(container, "readinessProbe", "grpc", "service")
        )


class BoundedResources(ContainerCheck):
    ID = "CKV_MS_18"
    NAME = "Containers request and limit cpu and memory, each request within its limit"

    def container_holds(self, container: Obj, pod: Obj, obj: Obj) -> bool:
        for resource in ("cpu", "memory"):
            request = quantity(get(container, "resources", "requests", resource))
            limit = quantity(get(container, "resources", "limits", resource))
            if request is None or limit is None or request > limit:
                return False
        return True


class PreStopSleep(ContainerCheck):
    ID = "CKV_MS_19"
    NAME = (
        "Containers' preStop hook is the kubelet's sleep action alone, for some seconds (no shell for exec)"
    )
    INIT = False

    def container_holds(self, container: Obj, pod: Obj, obj: Obj) -> bool:
        hook = get(container, "lifecycle", "preStop")
        seconds = get(hook, "sleep", "seconds")
        return isinstance(hook, dict) and set(hook) == {"sleep"} and type(seconds) is int and seconds > 0


class TmpOnEmptyDir(ContainerCheck):
    ID = "CKV_MS_20"
    NAME = "Containers mount an emptyDir at /tmp (their root filesystem is read-only)"
    INIT = False

    def container_holds(self, container: Obj, pod: Obj, obj: Obj) -> bool:
        volumes = {volume.get("name"): volume for volume in items(pod.get("volumes"))}
        mounts = [
            mount.get("name")
            for mount in items(container.get("volumeMounts"))
            if mount.get("mountPath") == "/tmp"
        ]
        return len(mounts) == 1 and "emptyDir" in volumes.get(mounts[0], {})


class ServiceImageByDigest(ContainerCheck):
    ID = "CKV_MS_21"
    NAME = (
        "Containers run their service's image (modelserving-<app.kubernetes.io/name>) by digest "
        "alone, never by a tag (tags move)"
    )
    INIT = False

    def container_holds(self, container: Obj, pod: Obj, obj: Obj) -> bool:
        service = get(obj, "spec", "template", "metadata", "labels", "app.kubernetes.io/name")
        name, _, digest = str(container.get("image")).partition("@")
        repository = name.rpartition("/")[2]
        return bool(service) and repository == f"modelserving-{service}" and bool(DIGEST.match(digest))


check_privilege_escalation = NoPrivilegeEscalation()
check_capabilities = NoCapabilities()
check_read_only_root = ReadOnlyRoot()
check_container_user = ContainerRunsAsTheImagesUser()
check_container_seccomp = ContainerSeccompAndProc()
check_ports = NamedPorts()
check_probes = Probes()
check_resources = BoundedResources()
check_prestop = PreStopSleep()
check_tmp = TmpOnEmptyDir()
check_image = ServiceImageByDigest()
