"""Custom checkov checks CKV_MS_22 to CKV_MS_24: the service's settings and its bearer tokens.

The settings are the ConfigMap each overlay generates (`<service>-model-config-<hash>`, read by
modelserving.settings). Staging and prod require tokens from a file; dev alone serves without
them, and says so; no token is ever written into a manifest.
"""

from __future__ import annotations

import re

from ms_base import Check, Obj, environment, get, items, mapping

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")  # what modelserving accepts


def settings(obj: Obj) -> Obj | None:
    """The data of the service's settings ConfigMap; None for any other ConfigMap."""
    service = get(obj, "metadata", "labels", "app.kubernetes.io/name")
    name = str(get(obj, "metadata", "name"))
    if not service or not re.fullmatch(rf"{re.escape(service)}-model-config(-[a-z0-9]+)?", name):
        return None
    return mapping(obj.get("data"))


class NoTokenInManifests(Check):
    ID = "CKV_MS_22"
    NAME = "No bearer token in the manifests: no AUTH_TOKEN in a container's env nor in a ConfigMap"
    KINDS = ("Deployment", "ConfigMap")

    def holds(self, obj: Obj) -> bool:
        if obj.get("kind") == "ConfigMap":
            return "AUTH_TOKEN" not in mapping(obj.get("data"))
        pod = get(obj, "spec", "template", "spec")
        containers = items(get(pod, "containers")) + items(get(pod, "initContainers"))
        return all(
            variable.get("name") != "AUTH_TOKEN" for c in containers for variable in items(c.get("env"))
        )


class SettingsOfTheirEnvironment(Check):
    ID = "CKV_MS_23"
    NAME = (
        "Settings name the environment of their namespace (ENVIRONMENT) and a LOG_LEVEL modelserving accepts"
    )
    KINDS = ("ConfigMap",)

    def holds(self, obj: Obj) -> bool | None:
        data = settings(obj)
        if data is None:
            return None
        env = environment(obj)
        return env is not None and data.get("ENVIRONMENT") == env and data.get("LOG_LEVEL") in LOG_LEVELS


class OnlyDevServesWithoutTokens(Check):
    ID = "CKV_MS_24"
    NAME = (
        "Only dev serves without tokens, on purpose (ALLOW_UNAUTHENTICATED=true, no AUTH_TOKEN_FILE); "
        "staging and prod read them from AUTH_TOKEN_FILE and never allow unauthenticated calls"
    )
    KINDS = ("ConfigMap",)

    def holds(self, obj: Obj) -> bool | None:
        data = settings(obj)
        if data is None:
            return None
        env = environment(obj)
        if env == "dev":
            return data.get("ALLOW_UNAUTHENTICATED") == "true" and "AUTH_TOKEN_FILE" not in data
        return (
            env is not None
            and data.get("ALLOW_UNAUTHENTICATED", "false") == "false"
            and bool(data.get("AUTH_TOKEN_FILE"))
        )


check_no_token = NoTokenInManifests()
check_environment = SettingsOfTheirEnvironment()
check_auth = OnlyDevServesWithoutTokens()
