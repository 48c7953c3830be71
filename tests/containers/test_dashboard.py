"""Every query of the Grafana dashboard returns data from a real Prometheus scraping real services
(issue #28, point 4): a renamed metric, label or recorded series fails the panel's own test.

Two containers of titanic's image run under the Pod's flags (`harness.run_image`), a primary and a
candidate it shadows every typed request to (SHADOW_URL), as a canary's shadow step runs; the
primary admits at most 4 inference requests at once, so that bursts get refused. Debian's
Prometheus scrapes both every second, with the labels a Kubernetes scrape gives the pods, and
evaluates the project's rules (k8s/components/environment/alerts.rules.yaml) every second. A
short load follows, in rounds a second apart: predictions and invalid requests over REST and
gRPC, and every third round a burst of 32 requests of 1000 rows at once. Each panel's query, its
variables given the values Grafana would give them, is then asked over the load's span as Grafana
asks (`/api/v1/query_range`), and must draw something: at least one series with a number in it.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
import tritonclient.grpc as triton  # type: ignore[import]  # no type information shipped
from clients.tensors import inputs_for
from containers.engine import built_image, docker_client
from containers.harness import SERVICES, TOKEN, run_image
from observability import traffic
from observability.dashboard import Query, queries, values
from observability.prometheus import (
    SCRAPE_SECONDS,
    Target,
    finite_points,
    pod_labels,
    query_range,
    running_prometheus,
    scraped_since,
)

from modelserving.dev.testing import example_rows

NAME = "titanic"
NAMESPACE = "modelserving-test"
VALUES = values(NAMESPACE, NAME, SCRAPE_SECONDS)
# The load in rounds a scrape apart, so that every series is scraped before and while it grows
# (a series is born with the first request that makes it, and a rate needs two scrapes of it).
ROUNDS = 12
REQUESTS = 5  # of each kind, per transport, per round
BURST_SIZE = 32  # a burst every third round


@dataclass(frozen=True)
class LoadedPrometheus:
    url: str
    started: float
    ended: float


def grpc_calls(address: str, calls: int) -> collections.Counter[str]:
    """`calls` ModelInfer calls with titanic's examples, then as many naming an input the model
    does not have: status codes counted."""
    client = triton.InferenceServerClient(address)
    codes: collections.Counter[str] = collections.Counter()
    try:
        for inputs in (
            inputs_for(triton, example_rows(SERVICES[NAME])),
            inputs_for(triton, [{"no_such_input": 1.0}]),
        ):
            for _ in range(calls):
                try:
                    client.infer(NAME, inputs, headers={"authorization": f"Bearer {TOKEN}"})
                    codes["OK"] += 1
                except triton.InferenceServerException as error:
                    codes[str(error.status())] += 1
    finally:
        client.close()
    return codes


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadedPrometheus]:
    docker, image = docker_client(), built_image(NAME)
    service = SERVICES[NAME]
    with ExitStack() as stack:
        candidate, _ = run_image(docker, NAME, {}, stack, image)
        primary, primary_grpc = run_image(
            docker, NAME, {}, stack, image, SHADOW_URL=candidate, MAX_CONCURRENT_REQUESTS="4"
        )
        targets = [
            Target(primary.removeprefix("http://"), pod_labels(NAME, NAMESPACE, "titanic-model-stable")),
            Target(candidate.removeprefix("http://"), pod_labels(NAME, NAMESPACE, "titanic-model-canary")),
        ]
        url = stack.enter_context(running_prometheus(tmp_path_factory.mktemp("prometheus"), targets))
        started = time.time()
        scraped_since(url, started)
        statuses: collections.Counter[int] = collections.Counter()
        codes: collections.Counter[str] = collections.Counter()
        refused: collections.Counter[int] = collections.Counter()
        for round_number in range(ROUNDS):
            statuses += traffic.rest(service, primary, REQUESTS, TOKEN)
            codes += grpc_calls(primary_grpc, REQUESTS)
            if round_number % 3 == 1:
                refused += traffic.burst(service, primary, BURST_SIZE, token=TOKEN)
            time.sleep(SCRAPE_SECONDS)
        ended = time.time()
        scraped_since(url, ended)
        print(f"\nload: REST {dict(statuses)}, gRPC {dict(codes)}, bursts {dict(refused)}")
        # The load did what the panels need: successes and client errors on both transports, and refusals.
        assert statuses == {200: ROUNDS * REQUESTS, 422: ROUNDS * REQUESTS}
        assert codes == {"OK": ROUNDS * REQUESTS, "StatusCode.INVALID_ARGUMENT": ROUNDS * REQUESTS}
        assert refused[503] > 0 and refused[200] > 0, refused
        yield LoadedPrometheus(url, started, time.time())


@pytest.mark.parametrize("query", queries(), ids=[query.name for query in queries()])
def test_the_panels_query_draws_something(prometheus: LoadedPrometheus, query: Query) -> None:
    series = query_range(prometheus.url, query.with_values(VALUES), prometheus.started, prometheus.ended)
    points = finite_points(series)
    print(f"\n{query.name}: {len(series)} series, {points} points")
    assert points > 0, f"{query.name}: nothing to draw from {query.with_values(VALUES)} ({series})"
