"""Custom checkov checks CKV_MS_25 to CKV_MS_29: the objects around the pods.

The ServiceAccount, the Service, prod's PodDisruptionBudget and HorizontalPodAutoscaler, and
the environment's Namespace with its Pod Security admission labels.
"""

from __future__ import annotations

from ms_base import K8S_VERSION, Check, Obj, environment, get, items, mapping


class ServiceAccountWithoutToken(Check):
    ID = "CKV_MS_25"
    NAME = "ServiceAccounts mount no API token by default (the service never calls the API server)"
    KINDS = ("ServiceAccount",)

    def holds(self, obj: Obj) -> bool:
        return obj.get("automountServiceAccountToken") is False


class ServiceTargetsNamedPorts(Check):
    ID = "CKV_MS_26"
    NAME = "Services target the pods' named ports http and grpc, the grpc one with appProtocol grpc"
    KINDS = ("Service",)

    def holds(self, obj: Obj) -> bool:
        ports = items(get(obj, "spec", "ports"))
        return [port.get("targetPort") for port in ports] == ["http", "grpc"] and [
            port.get("appProtocol") for port in ports if port.get("targetPort") == "grpc"
        ] == ["grpc"]


class ProdKeepsAPodUp(Check):
    ID = "CKV_MS_27"
    NAME = "Prod's PodDisruptionBudget keeps one pod up: minAvailable 1, no maxUnavailable"
    KINDS = ("PodDisruptionBudget",)

    def holds(self, obj: Obj) -> bool | None:
        if environment(obj) != "prod":
            return None
        spec = mapping(obj.get("spec"))
        return spec.get("minAvailable") == 1 and "maxUnavailable" not in spec


class ProdAutoscaling(Check):
    ID = "CKV_MS_28"
    NAME = (
        "HorizontalPodAutoscalers are prod's alone, autoscaling/v2, at least 2 replicas, CPU among their "
        "metrics, and hold scale-downs for at least a minute"
    )
    KINDS = ("HorizontalPodAutoscaler",)

    def holds(self, obj: Obj) -> bool:
        minimum = get(obj, "spec", "minReplicas")
        window = get(obj, "spec", "behavior", "scaleDown", "stabilizationWindowSeconds")
        resources = [
            get(m, "resource", "name")
            for m in items(get(obj, "spec", "metrics"))
            if m.get("type") == "Resource"
        ]
        return (
            environment(obj) == "prod"
            and obj.get("apiVersion") == "autoscaling/v2"
            and isinstance(minimum, int)
            and minimum >= 2
            and resources == ["cpu"]
            and isinstance(window, int)
            and window >= 60
        )


class RestrictedNamespace(Check):
    ID = "CKV_MS_29"
    NAME = f"Namespaces enforce, audit and warn at Pod Security restricted, version v{K8S_VERSION}"
    KINDS = ("Namespace",)

    def holds(self, obj: Obj) -> bool:
        labels = mapping(get(obj, "metadata", "labels"))
        return all(
            labels.get(f"pod-security.kubernetes.io/{mode}") == "restricted"
            and labels.get(f"pod-security.kubernetes.io/{mode}-version") == f"v{K8S_VERSION}"
            for mode in ("enforce", "audit", "warn")
        )


check_service_account_token = ServiceAccountWithoutToken()
check_service = ServiceTargetsNamedPorts()
check_disruption_budget = ProdKeepsAPodUp()
check_autoscaling = ProdAutoscaling()
check_namespace = RestrictedNamespace()
