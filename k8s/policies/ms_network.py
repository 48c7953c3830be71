"""Custom checkov checks CKV_MS_30 to CKV_MS_36: traffic to and from the pods.

The namespace's default-deny and the model's own NetworkPolicy (which peers it lets in, and the
ports they agree with, are tests/k8s/test_manifests.py's: they name other objects' pods), and
the gateway's two Ingresses: the REST API's, under the service's path on the environment's
host, and the gRPC API's (named `<service>-model-grpc`), each routing only what clients call.
"""

from __future__ import annotations

from typing import Any

from ms_base import GRPC_BACKEND, Check, Obj, annotations_of, environment, get, items

# What clients call under a service's path, after its predict route: nothing else (no metrics,
# probes or health: Prometheus and the kubelet reach the pods inside the cluster).
CLIENT_PATHS = [
    ("/v2/models", "Prefix"),
    ("/docs", "Prefix"),
    ("/redoc", "Exact"),
    ("/openapi.json", "Exact"),
    ("/", "Exact"),
]
GRPC_CLIENT_METHODS = ["ModelInfer", "ModelMetadata", "ModelReady"]
BOTH_DIRECTIONS = ["Egress", "Ingress"]
DNS = {(53, "UDP"), (53, "TCP")}


def is_default_deny(obj: Obj) -> bool:
    return bool(get(obj, "metadata", "name") == "default-deny")


def is_shadow(obj: Obj) -> bool:
    return str(get(obj, "metadata", "name")).endswith("-model-shadow")


def is_grpc(obj: Obj) -> bool:
    return str(get(obj, "metadata", "name")).endswith("-grpc")


def sorted_types(obj: Obj) -> list[str]:
    types = get(obj, "spec", "policyTypes")
    return sorted(map(str, types)) if isinstance(types, list) else []


class DefaultDeny(Check):
    ID = "CKV_MS_30"
    NAME = "The namespace's default-deny NetworkPolicy selects every pod and lets no traffic in or out"
    KINDS = ("NetworkPolicy",)

    def holds(self, obj: Obj) -> bool | None:
        if not is_default_deny(obj):
            return None
        return (
            get(obj, "spec", "podSelector") == {}
            and sorted_types(obj) == BOTH_DIRECTIONS
            and not get(obj, "spec", "ingress")
            and not get(obj, "spec", "egress")
        )


class EgressOnlyToDns(Check):
    ID = "CKV_MS_31"
    NAME = "The model's NetworkPolicy governs traffic both ways and lets its pods out only to DNS (port 53)"
    KINDS = ("NetworkPolicy",)

    def holds(self, obj: Obj) -> bool | None:
        if is_default_deny(obj) or is_shadow(obj):
            return None
        egress = items(get(obj, "spec", "egress"))
        return (
            sorted_types(obj) == BOTH_DIRECTIONS
            and bool(egress)
            and all(
                bool(ports := items(rule.get("ports")))
                and {(port.get("port"), port.get("protocol", "TCP")) for port in ports} <= DNS
                for rule in egress
            )
        )


class ShadowOnlyBetweenItsOwnPods(Check):
    ID = "CKV_MS_36"
    NAME = (
        "The shadow's NetworkPolicy (staging and prod) lets the service's pods reach one another on "
        "the http port, and nothing else"
    )
    KINDS = ("NetworkPolicy",)

    def holds(self, obj: Obj) -> bool | None:
        if not is_shadow(obj):
            return None
        own = get(obj, "spec", "podSelector", "matchLabels", "app.kubernetes.io/name")

        def only_own_pods_on_http(rules: Any, peers: str) -> bool:
            rules = items(rules)
            return len(rules) == 1 and [
                (get(peer, "podSelector", "matchExpressions"), peer.get("namespaceSelector"), peer.get("ipBlock"))
                for peer in items(rules[0].get(peers))
            ] == [([{"key": "app.kubernetes.io/name", "operator": "In", "values": [own]}], None, None)] and [
                (port.get("port"), port.get("protocol", "TCP")) for port in items(rules[0].get("ports"))
            ] == [("http", "TCP")]

        return (
            environment(obj) in ("staging", "prod")
            and bool(own)
            and sorted_types(obj) == BOTH_DIRECTIONS
            and only_own_pods_on_http(get(obj, "spec", "ingress"), "from")
            and only_own_pods_on_http(get(obj, "spec", "egress"), "to")
        )


class NginxClass(Check):
    ID = "CKV_MS_32"
    NAME = "Ingresses are the nginx gateway's (ingressClassName nginx)"
    KINDS = ("Ingress",)

    def holds(self, obj: Obj) -> bool:
        return bool(get(obj, "spec", "ingressClassName") == "nginx")


class RestRoutes(Check):
    ID = "CKV_MS_33"
    NAME = (
        "The REST Ingress routes only what clients call, to port http: one host, the service's predict "
        "route (Exact), then /v2/models, /docs, /redoc, /openapi.json and / under the same path"
    )
    KINDS = ("Ingress",)

    def holds(self, obj: Obj) -> bool | None:
        if is_grpc(obj):
            return None
        rules = items(get(obj, "spec", "rules"))
        paths = items(get(rules, 0, "http", "paths"))
        if len(rules) != 1 or not paths:
            return False
        predict = str(paths[0].get("path"))
        root = "/" + predict.split("/")[1]
        return (
            predict.startswith(f"{root}/predict")
            and paths[0].get("pathType") == "Exact"
            and [(path.get("path"), path.get("pathType")) for path in paths[1:]]
            == [(root + path, kind) for path, kind in CLIENT_PATHS]
            and all(get(path, "backend", "service", "port") == {"name": "http"} for path in paths)
        )


class GrpcRoutes(Check):
    ID = "CKV_MS_34"
    NAME = (
        "The gRPC Ingress speaks gRPC to the pods (backend-protocol GRPC) and routes only the model's "
        f"RPCs ({', '.join(GRPC_CLIENT_METHODS)}, Exact) to port grpc, on one host"
    )
    KINDS = ("Ingress",)

    def holds(self, obj: Obj) -> bool | None:
        if not is_grpc(obj):
            return None
        rules = items(get(obj, "spec", "rules"))
        paths = items(get(rules, 0, "http", "paths"))
        return (
            annotations_of(obj).get(GRPC_BACKEND) == "GRPC"
            and len(rules) == 1
            and [
                (path.get("path"), path.get("pathType"), get(path, "backend", "service", "port"))
                for path in paths
            ]
            == [
                (f"/inference.GRPCInferenceService/{method}", "Exact", {"name": "grpc"})
                for method in GRPC_CLIENT_METHODS
            ]
        )


class ProdTls(Check):
    ID = "CKV_MS_35"
    NAME = "Prod's Ingresses serve their hosts over TLS, the certificate from a Secret"
    KINDS = ("Ingress",)

    def holds(self, obj: Obj) -> bool | None:
        env = environment(obj)
        if env in ("dev", "staging"):
            return None
        hosts = [rule.get("host") for rule in items(get(obj, "spec", "rules"))]
        tls = items(get(obj, "spec", "tls"))
        return (
            env == "prod"
            and len(tls) == 1
            and tls[0].get("hosts") == hosts
            and bool(tls[0].get("secretName"))
        )


check_default_deny = DefaultDeny()
check_egress = EgressOnlyToDns()
check_ingress_class = NginxClass()
check_rest_routes = RestRoutes()
check_grpc_routes = GrpcRoutes()
check_tls = ProdTls()
check_shadow = ShadowOnlyBetweenItsOwnPods()
