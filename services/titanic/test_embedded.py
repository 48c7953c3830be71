"""Titanic's model and the library's formats live in a process that has metrics of its own.

MLServer, a notebook or a batch job registers its own Prometheus metrics in the default
registry, some under the names this library uses (MLServer's `grpc_server_handled_total`).
Importing the library must register nothing there, and a served app keeps its metrics in a
registry of its own, so Titanic's fitted pipeline, pickled and loaded, and Titanic's served
app both work in such a process."""

from pathlib import Path

import joblib
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, Counter, Histogram

from modelserving import Settings
from modelserving.server.app import create_app
from titanic import train
from titanic.features import CANDIDATES, load_training_data
from titanic.main import SERVICE

# The host's own metrics, made before anything of ours runs.
HOST_GRPC_HANDLED = Counter(
    "grpc_server_handled", "The host's gRPC calls.", ["grpc_service", "grpc_method", "grpc_code"]
)
HOST_INFERENCE = Histogram("model_inference_duration_seconds", "The host's model calls.", ["model"])


def test_a_pickled_pipeline_loads_and_predicts_beside_the_hosts_metrics(tmp_path: Path) -> None:
    frame, survived = load_training_data(train.DATA)
    pipeline = CANDIDATES[0].build(train.SEED).fit(frame, survived)
    joblib.dump(pipeline, tmp_path / "titanic.joblib")
    loaded = joblib.load(tmp_path / "titanic.joblib")
    scores = loaded.predict_proba(frame.head(20))[:, 1]
    assert ((scores >= 0) & (scores <= 1)).all()
    assert (loaded.predict(frame) == pipeline.predict(frame)).all()


def test_the_served_app_counts_in_its_own_registry_not_the_hosts() -> None:
    host_families = {family.name for family in REGISTRY.collect()}
    settings = Settings(allow_unauthenticated=True)
    with TestClient(create_app(SERVICE, settings)) as client:
        passenger = SERVICE.examples[0].model_dump(mode="json")
        response = client.post(SERVICE.predict_path, json=[passenger])
        assert response.status_code == 200, response.text
        ours = client.get("/metrics").text
    assert 'model_predictions_total{model="titanic"' in ours
    assert "The host's" not in ours
    assert {family.name for family in REGISTRY.collect()} == host_families
    HOST_INFERENCE.labels("host-model").observe(0.1)  # the host's metric still records
    assert REGISTRY.get_sample_value("model_inference_duration_seconds_count", {"model": "host-model"}) == 1
    HOST_GRPC_HANDLED.labels("host.Service", "Call", "OK").inc()  # and so does the other
    labels = {"grpc_service": "host.Service", "grpc_method": "Call", "grpc_code": "OK"}
    assert REGISTRY.get_sample_value("grpc_server_handled_total", labels) == 1
