"""What the container tests share: the registered services, a request for each over REST and
over gRPC, HTTP GET, Pod flags, and an image run as its overlay's Pod would run it."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
import tritonclient.grpc as triton  # type: ignore[import]  # no type information shipped
from clients.tensors import grpc_predictions, inputs_for

from modelserving.dev.testing import example_rows, free_port, registered_services

from .engine import built_image

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


def grpc_prediction(name: str, address: str, token: str | None = None, authority: str | None = None) -> Any:
    """The service's example rows (`example_rows`) predicted over gRPC by tritonclient at
    `address`, as the typed route's predictions; `authority`: the host a gateway routes by."""
    rows = example_rows(SERVICES[name])
    options = {"channel_args": [("grpc.default_authority", authority)]} if authority else {}
    client = triton.InferenceServerClient(address, **options)
    try:
        headers = {"authorization": f"Bearer {token}"} if token else None
        return grpc_predictions(client.infer(name, inputs_for(triton, rows), headers=headers), len(rows))
    finally:
        client.close()


def rest_prediction(name: str, url: str, token: str | None = None) -> Any:
    """The same rows predicted by the typed route at `url`."""
    service = SERVICES[name]
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
    body = json.dumps(example_rows(service)).encode()
    with urllib.request.urlopen(
        urllib.request.Request(url + service.predict_path, body, headers), timeout=10
    ) as r:
        return json.loads(r.read())["predictions"]


# Staging and prod require tokens (from a mounted Secret, which test_pod_equivalent.py
# reproduces); `run_image` gives the images this one as AUTH_TOKEN, and callers send it.
TOKEN = secrets.token_urlsafe(32)
AUTHORIZED = {"authorization": f"Bearer {TOKEN}"}
# Settings of an overlay a container here cannot keep: SHADOW_URL names the canary Service,
# which does not exist here, and resolving it would ask the machine's DNS server (tests talk
# to loopback only). The shadow has its own test (test_shadow.py).
CLUSTER_ONLY_SETTINGS = ("SHADOW_URL",)


def run_image(
    docker: str,
    service: str,
    config: dict[str, str],
    stack: ExitStack,
    image: str | None = None,
    docker_flags: Sequence[str] = (),
    **settings: str,
) -> tuple[str, str]:
    """The service's image (or `image`) under a Pod's constraints, with its overlay's settings
    `config` (the token given as AUTH_TOKEN) and the test's own `settings`, and any further
    `docker_flags` (mounts, cpusets), removed when `stack` closes: its URL, and its gRPC address,
    once it is ready."""
    port, grpc_port = free_port(), free_port()
    env = {
        name: value
        for name, value in config.items()
        if name != "AUTH_TOKEN_FILE" and name not in CLUSTER_ONLY_SETTINGS
    }
    env["AUTH_TOKEN"] = TOKEN
    env |= settings
    ports = {"PORT": str(port), "GRPC_PORT": str(grpc_port)}
    flags = [flag for name, value in {**env, **ports}.items() for flag in ("-e", f"{name}={value}")]
    container = subprocess.check_output(
        [docker, "run", "-d", *POD_FLAGS, *flags, *docker_flags, image or built_image(service)], text=True
    ).strip()
    stack.callback(lambda: subprocess.run([docker, "rm", "-f", container], capture_output=True))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not ready(url):
        if time.monotonic() > deadline:
            logs = subprocess.run([docker, "logs", container], capture_output=True, text=True)
            pytest.fail(f"{service} never became ready:\n{logs.stdout}{logs.stderr}")
        time.sleep(0.2)
    return url, f"127.0.0.1:{grpc_port}"


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
