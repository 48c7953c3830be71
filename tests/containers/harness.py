"""What the container tests share: the registered services, a request for each, HTTP GET, Pod flags."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from modelserving.testing import registered_services

SERVICES = {service.name: service for service in registered_services()}

# `docker run` flags for a Pod's constraints: read-only root, uid 1001, no capabilities or new
# privileges, a tmpfs /tmp; host network, where the service listens on loopback.
POD_FLAGS = [
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--user",
    "1001:1001",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--network",
    "host",
]


def prediction_request(name: str) -> tuple[str, list[dict[str, Any]]]:
    """The service's typed predict route and its documented examples as the body."""
    service = SERVICES[name]
    return service.predict_path, [example.model_dump(mode="json") for example in service.examples]


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
