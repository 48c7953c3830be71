"""The gateway splits a canary's traffic as the manifests say (issue #27): Titanic's staging
overlay, its Rollout at a 20 % step, behind nginx configured from its Ingresses and the canary
Ingresses Argo Rollouts makes of them (tests/gateway/argo.py), read as ingress-nginx reads
them (tests/gateway/nginx.py). Two pods of the real image stand for stable and canary; each
one's own /metrics says how many predictions it served. Over 2,000 requests, REST and gRPC
alike, the canary's share is within 3 points of 20 %; a request pinned by the Rollout's
canary-by-header always reaches the canary (`always`) or never does (`never`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest
import tritonclient.grpc as triton  # type: ignore[import]
from clients.tensors import inputs_for
from containers.engine import docker_client
from containers.harness import AUTHORIZED, SERVICES, TOKEN, prediction_request, run_image
from gateway.argo import canary_ingresses
from gateway.nginx import canary_splits, grpc_routes, ingress_routes, running_gateway
from k8s.overlays import render
from prometheus_client.parser import text_string_to_metric_families

from modelserving.dev.testing import example_rows, free_port

SERVICE, ENVIRONMENT = "titanic", "staging"
WEIGHT, REQUESTS, TOLERANCE = 20, 2000, 0.03
PINNED = 100


@dataclass
class Canary:
    url: str  # the gateway's REST listener
    host: str
    grpc: str  # the gateway's gRPC listener
    header: str  # the Rollout's canary-by-header
    pods: dict[str, str]  # stable and canary: each pod's own URL

    def served(self) -> dict[str, tuple[float, float]]:
        """Each pod's predictions so far: (REST, gRPC)."""
        path, _ = prediction_request(SERVICE)
        counts = {}
        for pod, url in self.pods.items():
            samples = {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
                for sample in family.samples
            }
            rest = samples.get(
                ("http_requests_total", (("method", "POST"), ("route", path), ("status", "200"))), 0
            )
            grpc = sum(
                value
                for (name, labels), value in samples.items()
                if name == "grpc_server_handled_total"
                and ("grpc_method", "ModelInfer") in labels
                and ("grpc_code", "OK") in labels
            )
            counts[pod] = (rest, grpc)
        return counts

    def shares(self, send: int, rest: bool, header: str | None = None) -> float:
        """The canary's share of `send` predictions through the gateway (REST or gRPC)."""
        before = self.served()
        headers = {self.header.lower(): header} if header else {}  # gRPC metadata keys are lowercase
        if rest:
            path, rows = prediction_request(SERVICE)
            with httpx.Client(
                base_url=self.url, headers={"host": self.host, **AUTHORIZED, **headers}
            ) as client:
                for _ in range(send):
                    assert client.post(f"/{SERVICE}{path}", json=rows).status_code == 200
        else:
            authority = f"{SERVICE}.{self.host}"
            channel = [("grpc.default_authority", authority)]
            grpc_client = triton.InferenceServerClient(self.grpc, channel_args=channel)
            inputs = inputs_for(triton, example_rows(SERVICES[SERVICE]))
            try:
                for _ in range(send):
                    grpc_client.infer(
                        SERVICE, inputs, headers={"authorization": f"Bearer {TOKEN}", **headers}
                    )
            finally:
                grpc_client.close()
        after = self.served()
        index = 0 if rest else 1
        moved = {pod: after[pod][index] - before[pod][index] for pod in self.pods}
        assert sum(moved.values()) == send, moved  # every request reached one pod or the other
        return moved["canary"] / send


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Canary]:
    objects = render(SERVICE, ENVIRONMENT)
    (rollout,) = (obj for obj in objects if obj["kind"] == "Rollout")
    strategy = rollout["spec"]["strategy"]["canary"]
    assert WEIGHT in [step.get("setWeight") for step in strategy["steps"]], "20 % is no longer a step"
    objects = [*objects, *canary_ingresses(objects, WEIGHT)]
    (config,) = (
        obj["data"]
        for obj in objects
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].startswith(f"{SERVICE}-model-config-")
    )
    docker = docker_client()
    with ExitStack() as stack:
        stable_url, stable_grpc = run_image(docker, SERVICE, config, stack)
        canary_url, canary_grpc = run_image(docker, SERVICE, config, stack)
        services = strategy["stableService"], strategy["canaryService"]
        rest, grpc = ingress_routes(objects), grpc_routes(objects)
        rest_split = canary_splits(
            objects, rest, dict(zip(services, (stable_url[7:], canary_url[7:]), strict=True))
        )
        grpc_split = canary_splits(
            objects, grpc, dict(zip(services, (stable_grpc, canary_grpc), strict=True))
        )
        assert set(rest_split) == set(rest) and set(grpc_split) == set(grpc), "a route without its canary"
        (host,) = {route.host for route in rest}
        grpc_port = free_port()
        url = stack.enter_context(
            running_gateway(tmp_path_factory.mktemp("nginx"), rest_split, grpc_port, grpc_split)
        )
        yield Canary(
            url,
            host,
            f"127.0.0.1:{grpc_port}",
            strategy["trafficRouting"]["nginx"]["additionalIngressAnnotations"]["canary-by-header"],
            {"stable": stable_url, "canary": canary_url},
        )


@pytest.mark.parametrize("rest", [True, False], ids=["REST", "gRPC"])
def test_the_canary_gets_its_weight(canary: Canary, rest: bool) -> None:
    share = canary.shares(REQUESTS, rest)
    print(f"canary share over {REQUESTS} {'REST' if rest else 'gRPC'} requests at {WEIGHT} %: {share:.3f}")
    assert abs(share - WEIGHT / 100) <= TOLERANCE


@pytest.mark.parametrize("rest", [True, False], ids=["REST", "gRPC"])
@pytest.mark.parametrize(("header", "expected"), [("always", 1.0), ("never", 0.0)])
def test_a_pinned_request_goes_where_its_header_says(
    canary: Canary, rest: bool, header: str, expected: float
) -> None:
    assert canary.shares(PINNED, rest, header) == expected
