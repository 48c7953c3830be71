"""GET /metrics: counters move with traffic, and labels use route templates only."""

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from modelserving import ModelService, Settings
from modelserving.outputs import ScoreOutput
from modelserving.server.app import create_app


@pytest.fixture
def client(toy_service: ModelService[Any, Any]) -> Iterator[TestClient]:
    with TestClient(create_app(toy_service, Settings())) as started:
        yield started


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(snapshot: dict[Any, float], name: str, **labels: str) -> float:
    return snapshot.get((name, tuple(sorted(labels.items()))), 0.0)


def test_predictions_requests_and_batches_are_counted(client: TestClient) -> None:
    before = samples(client)
    for _ in range(10):
        assert client.post("/scale", json=[{"x": 1}, {"x": 2}]).status_code == 200
    v2_body = {"inputs": [{"name": "x", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]}]}
    assert client.post("/v2/models/toy/infer", json=v2_body).status_code == 200
    after = samples(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("model_predictions_total", model="toy", version="7.1") == 23
    assert moved("model_batch_size_count", model="toy") == 11
    assert moved("model_batch_size_sum", model="toy") == 23
    assert moved("model_inference_duration_seconds_count", model="toy") == 11
    assert moved("http_requests_total", method="POST", route="/scale", status="200") == 10
    infer_route = "/v2/models/{model_name}/infer"
    assert moved("http_requests_total", method="POST", route=infer_route, status="200") == 1
    assert moved("http_request_duration_seconds_count", method="POST", route="/scale", status="200") == 10
    assert value(after, "model_load_seconds", model="toy", version="7.1") > 0


def test_labels_never_hold_raw_paths(client: TestClient) -> None:
    client.get("/v2/models/some-model-name/ready")
    for attempt in range(5):
        client.get(f"/no/such/path/{attempt}")
    client.request("BREW", "/scale")
    text = client.get("/metrics").text
    assert "some-model-name" not in text
    assert "/no/such/path" not in text
    assert 'route="<unmatched>"' in text
    assert 'method="OTHER"' in text
    assert 'route="/v2/models/{model_name}/ready"' in text


def test_in_flight_gauge_counts_the_scrape_itself(client: TestClient) -> None:
    assert value(samples(client), "http_requests_in_flight") == 1


def test_served_outputs_are_counted_per_bin_and_version(toy_service: ModelService[Any, Any]) -> None:
    binned = dataclasses.replace(toy_service, output=ScoreOutput("value", edges=(0, 10), tolerance=0.1))
    with TestClient(create_app(binned, Settings())) as client:
        bins = {"<0": 0.0, "0-10": 0.0, ">=10": 0.0}
        loaded = samples(client)  # every bin is there from the start, at 0: the warm-up is not counted
        assert {
            b: value(loaded, "model_outputs_total", model="toy", version="7.1", bin=b) for b in bins
        } == bins
        # The toy triples x: -3, 3, 6 and 15 fall below 0, twice between 0 and 10, and above.
        assert client.post("/scale", json=[{"x": -1}, {"x": 1}, {"x": 2}, {"x": 5}]).status_code == 200
        v2_body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [4]}]}
        assert client.post("/v2/models/toy/infer", json=v2_body).status_code == 200  # 12: above
        served = samples(client)
    counted = {b: value(served, "model_outputs_total", model="toy", version="7.1", bin=b) for b in bins}
    assert counted == {"<0": 1, "0-10": 2, ">=10": 2}
