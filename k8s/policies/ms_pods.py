"""Custom checkov checks CKV_MS_1 to CKV_MS_10: the model's Deployment and its pod template.

The Pod Security Standards' *restricted* profile at pod level (the namespace enforces it too;
these fail before a cluster would refuse), and the repo's rules for the pods: their own
ServiceAccount, one container, spread over nodes, the selector, and who owns the replicas.
"""

from __future__ import annotations

from ms_base import GID, UID, Check, Obj, PodCheck, environment, get, items, labels_within

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


class HostNamespaces(PodCheck):
    ID = "CKV_MS_1"
    NAME = "Pods share no host namespace: hostNetwork, hostPID and hostIPC unset or false"

    def pod_holds(self, pod: Obj, obj: Obj) -> bool:
        return not any(pod.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))


class PodRunsAsTheImagesUser(PodCheck):
    ID = "CKV_MS_2"
    NAME = f"Pods run as non-root, as the image's user: runAsNonRoot, runAsUser, runAsGroup and fsGroup {UID}"

    def pod_holds(self, pod: Obj, obj: Obj) -> bool:
        context = get(pod, "securityContext")
        return (
            get(context, "runAsNonRoot") is True
            and get(context, "runAsUser") == UID
            and get(context, "runAsGroup") == GID
            and get(context, "fsGroup") == GID
        )


class PodSeccompAndKernel(PodCheck):
    ID = "CKV_MS_3"
    NAME = "Pods use the RuntimeDefault seccomp profile, set no sysctls and are no Windows host process"

    def pod_holds(self, pod: Obj, obj: Obj) -> bool:
        context = get(pod, "securityContext")
        return (
            get(context, "seccompProfile", "type") == "RuntimeDefault"
            and not get(context, "sysctls")
            and not get(context, "windowsOptions", "hostProcess")
        )


class RestrictedVolumeTypes(PodCheck):
    ID = "CKV_MS_4"
    NAME = "Pods mount only the volume types the restricted profile allows"

    def pod_holds(self, pod: Obj, obj: Obj) -> bool:
        return all(set(volume) - {"name"} <= RESTRICTED_VOLUME_TYPES for volume in items(pod.get("volumes")))


class OwnServiceAccountWithoutToken(PodCheck):
    ID = "CKV_MS_5"
    NAME = "Pods run as a ServiceAccount of their own (not default) and mount no API token"

    def pod_holds(self, pod: Obj, obj: Obj) -> bool:
        return pod.get("automountServiceAccountToken") is False and pod.get("serviceAccountName") not in (
            None,
            "",
            "default",
        )


def node_spreads(pod: Obj, obj: Obj) -> list[Obj]:
    """The pod's spread constraints over nodes (kubernetes.io/hostname) that select its own pods."""
    labels = get(obj, "spec", "template", "metadata", "labels")
    return [
        constraint
        for constraint in items(pod.get("topologySpreadConstraints"))
        if constraint.get("topologyKey") == "kubernetes.io/hostname"
        and labels_within(get(constraint, "labelSelector", "matchLabels"), labels)
    ]


class SpreadOverNodes(PodCheck):
    ID = "CKV_MS_6"
    NAME = "Pods spread over nodes (kubernetes.io/hostname), counting the pods of their own labels"

    def pod_holds(self, pod: Obj, obj: Obj) -> bool:
        return bool(node_spreads(pod, obj))


class ProdSpreadsStrictly(PodCheck):
    ID = "CKV_MS_7"
    NAME = (
        "Prod pods never share a node while a schedulable one has none of them: "
        "maxSkew 1, DoNotSchedule, nodeTaintsPolicy Honor"
    )

    def pod_holds(self, pod: Obj, obj: Obj) -> bool | None:
        env = environment(obj)
        if env in ("dev", "staging"):
            return None
        return env == "prod" and any(
            spread.get("maxSkew") == 1
            and spread.get("whenUnsatisfiable") == "DoNotSchedule"
            and spread.get("nodeTaintsPolicy") == "Honor"
            for spread in node_spreads(pod, obj)
        )


class OneContainer(PodCheck):
    ID = "CKV_MS_8"
    NAME = "Pods run one container and no init container (the /tmp emptyDir needs no set-up)"

    def pod_holds(self, pod: Obj, obj: Obj) -> bool:
        return len(items(pod.get("containers"))) == 1 and not pod.get("initContainers")


class SelectorByName(Check):
    ID = "CKV_MS_9"
    NAME = "Deployments select their pod template by its app.kubernetes.io/name label"
    KINDS = ("Deployment",)

    def holds(self, obj: Obj) -> bool:
        selector = get(obj, "spec", "selector", "matchLabels")
        return bool(get(selector, "app.kubernetes.io/name")) and labels_within(
            selector, get(obj, "spec", "template", "metadata", "labels")
        )


class ReplicasOwner(Check):
    ID = "CKV_MS_10"
    NAME = (
        "Deployments set their replicas (at least 1) in dev; in staging and prod they hold 0, their "
        "template run by the Argo Rollouts Rollout that references them (components/canary)"
    )
    KINDS = ("Deployment",)

    def holds(self, obj: Obj) -> bool:
        replicas = get(obj, "spec", "replicas")
        env = environment(obj)
        if env in ("staging", "prod"):
            return replicas == 0
        return env is not None and isinstance(replicas, int) and replicas >= 1


check_host_namespaces = HostNamespaces()
check_pod_user = PodRunsAsTheImagesUser()
check_pod_seccomp = PodSeccompAndKernel()
check_volume_types = RestrictedVolumeTypes()
check_service_account = OwnServiceAccountWithoutToken()
check_spread = SpreadOverNodes()
check_prod_spread = ProdSpreadsStrictly()
check_one_container = OneContainer()
check_selector = SelectorByName()
check_replicas = ReplicasOwner()
