"""The Argo Rollouts objects the overlays ship, checked against the engine's schema.

Argo Rollouts v1.9.1 publishes its schema as the `openAPIV3Schema` of its CustomResourceDefinitions
(manifests/crds/rollout-crd.yaml and analysis-template-crd.yaml at tag v1.9.1). The schemas below
are written from them for every field these manifests use: the same types, int-or-string fields,
required fields and nesting. Where the controller validates more than its CRD says, they say
it too (a step does one thing; `podTemplateHashValue` is `Stable` or `Latest`; `scaleDown` is
one of three words; `setWeight` is a percentage), and they are stricter in one way on purpose:
an unknown field is an error here, where the API server would prune it without a word (a
misspelt `canaryServce` would silently leave the Rollout without traffic routing).

`validate(obj)` returns the errors of one rendered object, empty when it is valid.
"""

from __future__ import annotations

from typing import Any

import jsonschema  # type: ignore[import]

ENGINE = "Argo Rollouts"
VERSION = "v1.9.1"
API_VERSION = "argoproj.io/v1alpha1"


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A structural object of exactly these fields (no others)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


STRING: dict[str, Any] = {"type": "string"}
STRINGS: dict[str, Any] = {"type": "object", "additionalProperties": STRING}
INT_OR_STRING: dict[str, Any] = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
INT32: dict[str, Any] = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
METADATA = {
    "type": "object",
    "properties": {"name": STRING, "namespace": STRING, "labels": STRINGS, "annotations": STRINGS},
    "required": ["name"],
}

ARGUMENT = _object(
    {
        "name": STRING,
        "value": STRING,
        "valueFrom": {
            "type": "object",
            "properties": {
                "fieldRef": _object({"fieldPath": STRING}, ("fieldPath",)),
                "podTemplateHashValue": {"enum": ["Stable", "Latest"]},
                "secretKeyRef": _object({"name": STRING, "key": STRING}, ("key", "name")),
            },
            "additionalProperties": False,
            "minProperties": 1,
            "maxProperties": 1,
        },
    },
    ("name",),
)
ANALYSIS = _object(
    {
        "templates": {
            "type": "array",
            "minItems": 1,
            "items": _object({"templateName": STRING, "clusterScope": BOOLEAN}, ("templateName",)),
        },
        "args": {"type": "array", "items": ARGUMENT},
    },
    ("templates",),
)
STEP = {
    "type": "object",
    "properties": {
        "setWeight": {"type": "integer", "minimum": 0, "maximum": 100},
        "pause": _object({"duration": INT_OR_STRING}),
        "setCanaryScale": _object({"replicas": INT32, "weight": INT32, "matchTrafficWeight": BOOLEAN}),
        "analysis": ANALYSIS,
    },
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 1,  # a step does one thing
}
ROLLOUT = _object(
    {
        "apiVersion": {"const": API_VERSION},
        "kind": {"const": "Rollout"},
        "metadata": METADATA,
        "spec": _object(
            {
                "replicas": INT32,
                "selector": _object({"matchLabels": STRINGS}, ("matchLabels",)),
                "workloadRef": _object(
                    {
                        "apiVersion": STRING,
                        "kind": STRING,
                        "name": STRING,
                        "scaleDown": {"enum": ["never", "onsuccess", "progressively"]},
                    },
                    ("apiVersion", "kind", "name"),
                ),
                "revisionHistoryLimit": INT32,
                "rollbackWindow": _object({"revisions": INT32}),
                "progressDeadlineSeconds": INT32,
                "strategy": _object(
                    {
                        "canary": _object(
                            {
                                "stableService": STRING,
                                "canaryService": STRING,
                                "trafficRouting": _object(
                                    {
                                        "nginx": _object(
                                            {
                                                "stableIngress": STRING,
                                                "stableIngresses": {"type": "array", "items": STRING},
                                                "annotationPrefix": STRING,
                                                "additionalIngressAnnotations": STRINGS,
                                                "canaryIngressAnnotations": STRINGS,
                                            }
                                        )
                                    }
                                ),
                                "steps": {"type": "array", "items": STEP},
                            }
                        )
                    },
                    ("canary",),
                ),
            },
            ("selector", "workloadRef", "strategy"),
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)
METRIC = _object(
    {
        "name": STRING,
        "initialDelay": STRING,
        "interval": STRING,
        "count": INT_OR_STRING,
        "failureLimit": INT_OR_STRING,
        "inconclusiveLimit": INT_OR_STRING,
        "consecutiveErrorLimit": INT_OR_STRING,
        "successCondition": STRING,
        "failureCondition": STRING,
        "provider": _object(
            {
                "prometheus": _object(
                    {"address": STRING, "query": STRING, "timeout": INT32}, ("address", "query")
                )
            },
        ),
    },
    ("name", "provider"),
)
ANALYSIS_TEMPLATE = _object(
    {
        "apiVersion": {"const": API_VERSION},
        "kind": {"const": "AnalysisTemplate"},
        "metadata": METADATA,
        "spec": _object(
            {
                "args": {"type": "array", "items": ARGUMENT},
                "metrics": {"type": "array", "minItems": 1, "items": METRIC},
            },
            ("metrics",),
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)
SCHEMAS = {"Rollout": ROLLOUT, "AnalysisTemplate": ANALYSIS_TEMPLATE}


def is_argo_rollouts(obj: dict[str, Any]) -> bool:
    return str(obj.get("apiVersion", "")).startswith("argoproj.io/")


def validate(obj: dict[str, Any]) -> list[str]:
    """Every way `obj` breaks its kind's schema, as `<path>: <message>`."""
    schema = SCHEMAS.get(obj.get("kind", ""))
    if schema is None:
        return [f"{obj.get('kind')}: not a kind of {ENGINE} these manifests use"]
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(str(part) for part in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(obj), key=lambda error: list(error.absolute_path))
    ]
