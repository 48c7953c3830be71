"""What the container tests share: the registered services, a request for each over REST and
over gRPC, HTTP GET, Pod flags."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import tritonclient.grpc as triton  # type: ignore[import]  # no type information shipped
from clients.tensors import grpc_predictions, inputs_for

from modelserving.dev.testing import example_rows, registered_services

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
