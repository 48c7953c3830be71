"""The canary Ingresses the Argo Rollouts controller (v1.9.1, k8s/README.md) makes for a Rollout
that routes through ingress-nginx, as its documentation (features/traffic-management/nginx.md)
describes them and its reconciler (rollout/trafficrouting/nginx) builds them: for each stable
Ingress, one named `<rollout>-<ingress>-canary`, of the same class and TLS, with the rules that
have a path to the stable Service, those paths sent to the canary Service instead; none of the
stable one's annotations, but the Rollout's `additionalIngressAnnotations` (under
ingress-nginx's prefix), `canary: "true"` and `canary-weight` (the step's weight).
ingress-nginx then takes everything else from the stable Ingress of the same host and path;
tests/gateway/nginx.py reads them as it does.
"""

from __future__ import annotations

import copy
from typing import Any

PREFIX = "nginx.ingress.kubernetes.io"


def canary_ingresses(objects: list[dict[str, Any]], weight: int) -> list[dict[str, Any]]:
    """The canary Ingresses for the one Rollout among `objects`, at `weight` percent."""
    (rollout,) = (obj for obj in objects if obj["kind"] == "Rollout")
    canary = rollout["spec"]["strategy"]["canary"]
    nginx = canary["trafficRouting"]["nginx"]
    names = nginx.get("stableIngresses") or [nginx["stableIngress"]]
    annotations = {
        (key if key.startswith(PREFIX) else f"{PREFIX}/{key}"): value
        for key, value in (nginx.get("additionalIngressAnnotations") or {}).items()
    }
    annotations |= {f"{PREFIX}/canary": "true", f"{PREFIX}/canary-weight": str(weight)}
    made = []
    for name in names:
        (stable,) = (obj for obj in objects if obj["kind"] == "Ingress" and obj["metadata"]["name"] == name)
        rules = []
        for rule in stable["spec"]["rules"]:
            rule = copy.deepcopy(rule)
            stable_paths = [
                path
                for path in rule["http"]["paths"]
                if path["backend"]["service"]["name"] == canary["stableService"]
            ]
            for path in stable_paths:
                path["backend"]["service"]["name"] = canary["canaryService"]
            if stable_paths:
                rules.append(rule)
        assert (
            rules
        ), f"Ingress {name} has no rule with Service {canary['stableService']}: the controller refuses it"
        spec = {
            key: copy.deepcopy(stable["spec"][key])
            for key in ("ingressClassName", "tls")
            if key in stable["spec"]
        }
        made.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {
                    "name": f"{rollout['metadata']['name']}-{name}-canary",
                    "namespace": stable["metadata"].get("namespace"),
                    "annotations": dict(annotations),
                },
                "spec": {**spec, "rules": rules},
            }
        )
    return made
