"""Every service's image behind the gateway its staging overlays declare (nginx, Debian's package,
configured from the rendered Ingress objects): each model answers through its `/<service>` prefix,
and over gRPC (HTTP/2) through its own host; its docs and OpenAPI document work under the
prefix, nothing else is routed, and nginx refuses bodies over the limit the app sets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import grpc  # type: ignore[import]
import httpx
import pytest
from containers.engine import docker_client
from containers.harness import (
    AUTHORIZED,
    SERVICES,
    TOKEN,
    grpc_prediction,
    prediction_request,
    rest_prediction,
    run_image,
)
from gateway.nginx import Route, grpc_routes, ingress_routes, running_gateway
from k8s.overlays import render
from tritonclient.utils import InferenceServerException  # type: ignore[import]

from modelserving.dev.testing import free_port, raised

ENVIRONMENT = "staging"  # plain HTTP; prod adds TLS to the same routes


class Gateway:
    def __init__(
        self, url: str, host: str, direct: dict[str, str], config: dict[str, dict[str, str]], grpc: str
    ) -> None:
        self.url, self.host, self.direct, self.config = url, host, direct, config
        self.grpc = grpc  # the gRPC listener's address

    def call(
        self, method: str, path: str, headers: dict[str, str] | None = None, **options: Any
    ) -> httpx.Response:
        """A request to the gateway with the token, for its host unless `headers` name another."""
        headers = {"host": self.host, **AUTHORIZED, **(headers or {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **options)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    docker = docker_client()
    with ExitStack() as stack:
        backends: dict[Route, str] = {}
        grpc_backends: dict[Route, str] = {}
        direct: dict[str, str] = {}
        config: dict[str, dict[str, str]] = {}
        for service in sorted(SERVICES):
            objects = render(service, ENVIRONMENT)
            (config[service],) = (
                obj["data"]
                for obj in objects
                if obj["kind"] == "ConfigMap"
                and obj["metadata"]["name"].startswith(f"{service}-model-config-")
            )
            direct[service], grpc_address = run_image(docker, service, config[service], stack)
            for route in ingress_routes(objects):
                backends[route] = direct[service].removeprefix("http://")
            for route in grpc_routes(objects):
                assert route.host == f"{service}.{ingress_routes(objects)[0].host}"
                grpc_backends[route] = grpc_address
        (host,) = {route.host for route in backends}
        assert {route.path.split("/")[1] for route in backends} == set(SERVICES)
        grpc_port = free_port()
        url = stack.enter_context(
            running_gateway(tmp_path_factory.mktemp("nginx"), backends, grpc_port, grpc_backends)
        )
        yield Gateway(url, host, direct, config, f"127.0.0.1:{grpc_port}")


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_model_answers_through_its_prefix(gateway: Gateway, service: str) -> None:
    path, rows = prediction_request(service)
    through = gateway.call("POST", f"/{service}{path}", json=rows)
    assert through.status_code == 200, through.text
    assert through.json() == httpx.post(gateway.direct[service] + path, json=rows, headers=AUTHORIZED).json()


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_model_answers_grpc_through_its_own_host(gateway: Gateway, service: str) -> None:
    through = grpc_prediction(service, gateway.grpc, token=TOKEN, authority=f"{service}.{gateway.host}")
    assert through == rest_prediction(service, gateway.direct[service], token=TOKEN)
    with pytest.raises(InferenceServerException):  # another service's host: not this model
        other = next(name for name in sorted(SERVICES) if name != service)
        grpc_prediction(service, gateway.grpc, token=TOKEN, authority=f"{other}.{gateway.host}")
    with pytest.raises(InferenceServerException):  # no such host
        grpc_prediction(service, gateway.grpc, token=TOKEN, authority=f"nope.{gateway.host}")


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_docs_work_under_the_prefix(gateway: Gateway, service: str) -> None:
    assert (
        gateway.call("GET", f"/{service}/", follow_redirects=False).headers["location"] == f"/{service}/docs"
    )
    page = gateway.call("GET", f"/{service}/docs")
    assert page.status_code == 200 and f"/{service}/openapi.json" in page.text
    document = gateway.call("GET", f"/{service}/openapi.json").json()
    assert document["servers"] == [{"url": f"/{service}"}]
    path, _ = prediction_request(service)
    assert path in document["paths"]
    asset = gateway.call("GET", f"/{service}/docs/static/swagger-ui-bundle.js")
    assert asset.status_code == 200


INSIDE_THE_CLUSTER = [
    "/metrics",
    "/livez",
    "/readyz",
    "/health_check",
    "/health_check/load_balancer",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
]


@pytest.mark.parametrize(
    ("host", "path"),
    [
        (None, "/livez"),  # no prefix
        (None, "/nope/v2/models/nope"),  # no such model
        (None, "/titanicx/v2/models/titanic"),  # a prefix is a whole path segment
        ("elsewhere.example.com", "/titanic/v2/models/titanic"),  # not the environment's host
        (None, "/titanic/docsx"),
    ],
)
def test_nothing_else_is_routed(gateway: Gateway, host: str | None, path: str) -> None:
    response = gateway.call("GET", path, headers={"host": host or gateway.host})
    assert response.status_code == 404
    assert response.headers.get("server", "").startswith("nginx"), "the gateway itself must refuse it"


@pytest.mark.parametrize("path", INSIDE_THE_CLUSTER)
def test_metrics_probes_and_health_stay_inside_the_cluster(gateway: Gateway, path: str) -> None:
    """The app answers each (Prometheus and the kubelet reach the pods); the gateway does not."""
    assert httpx.get(gateway.direct["titanic"] + path, timeout=10).status_code == 200
    response = gateway.call("GET", f"/titanic{path}")
    assert response.status_code == 404
    assert response.headers.get("server", "").startswith("nginx"), "the gateway itself must refuse it"


@pytest.mark.parametrize("method", ["ServerMetadata", "ServerLive", "ServerReady"])
def test_only_the_models_rpcs_are_routed(gateway: Gateway, method: str) -> None:
    with grpc.insecure_channel(
        gateway.grpc, options=[("grpc.default_authority", f"titanic.{gateway.host}")]
    ) as channel:
        call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
        with pytest.raises(grpc.RpcError) as refused:
            call(b"", timeout=10)
        assert raised(refused).code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE)
        health = channel.unary_unary("/grpc.health.v1.Health/Check")
        with pytest.raises(grpc.RpcError):
            health(b"", timeout=10)


def test_the_gateway_refuses_bodies_over_the_apps_limit(gateway: Gateway) -> None:
    limit = int(gateway.config["titanic"]["MAX_BODY_BYTES"])
    path, _ = prediction_request("titanic")
    over = gateway.call("POST", f"/titanic{path}", content=b"[" + b" " * limit + b"]")
    assert over.status_code == 413 and "nginx" in over.text
    within = gateway.call(
        "POST",
        f"/titanic{path}",
        content=json.dumps([]).encode(),
        headers={"content-type": "application/json"},
    )
    assert within.status_code == 200
