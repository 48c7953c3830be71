"""Test helpers for model services: a client that knows the predict route, the contract every
service keeps, and a check that training reproduces the committed model.

A service's `test_api.py` gets the shared contract tests by subclassing, and
adds its own tests with the same `client` fixture:

    class TestContract(ServiceContract):
        service = SERVICE
        valid_row = {"sepal_length_cm": 5.1, ...}

    def test_misspelt_field_is_named(client: ServiceClient) -> None:
        assert_rejected(client.predict([{...}]), "body[0].petal_widht_cm")

Only tests import this module: it needs pytest and httpx, which serving does not.
"""

import fcntl
import importlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from modelserving import LoadedModel, ModelCard, ModelService, Settings, load_model
from modelserving.server.app import create_app


class ServiceClient(TestClient):
    """A test client for one service's app, with its predict route at hand."""

    def __init__(self, service: ModelService[Any, Any], settings: Settings) -> None:
        super().__init__(create_app(service, settings))
        self.predict_path = service.predict_path

    def predict(self, rows: Any) -> httpx.Response:
        """POST `rows` as JSON to the predict route; NaN and infinities are sent as such."""
        response: httpx.Response = self.post(
            self.predict_path, content=json.dumps(rows), headers={"content-type": "application/json"}
        )
        return response


@contextmanager
def started(service: ModelService[Any, Any], **settings: Any) -> Iterator[ServiceClient]:
    """A client for `service`'s app after start-up (model loaded and warmed up)."""
    with ServiceClient(service, Settings(**settings)) as client:
        yield client


BACKGROUND_NICENESS = 10
# Held shared by every test process that keeps cores busy for minutes, exclusively by a test that
# times latencies: on a shared machine (Pants runs test files in parallel) the two never overlap.
BUSY_TESTS_LOCK = Path(tempfile.gettempdir()) / "modelserving-busy-tests.lock"
_held_locks: list[Any] = []


def yield_the_cpu() -> None:
    """For a test module that keeps cores busy for minutes (training, builds, load generators):
    wait while a latency test runs (`cpu_to_myself`), hold it off for the life of this process,
    and run at a lower priority, as do the processes this one starts."""
    lock = BUSY_TESTS_LOCK.open("a")
    fcntl.flock(lock, fcntl.LOCK_SH)
    _held_locks.append(lock)  # released when the process ends
    current = os.nice(0)
    if current < BACKGROUND_NICENESS:
        os.nice(BACKGROUND_NICENESS - current)


@contextmanager
def cpu_to_myself() -> Iterator[None]:
    """For a test that times latencies: wait until no busy test module runs (`yield_the_cpu`),
    and keep new ones from starting until the block ends."""
    with BUSY_TESTS_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def raised(caught: pytest.ExceptionInfo[Any]) -> Any:
    """What a `pytest.raises` block caught, as Any: gRPC's and tritonclient's errors are untyped."""
    return caught.value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def loopback_http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """An HTTP server in this process answering with `handler`, a thread per connection, on a
    free loopback port: its base URL; shut down afterwards."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def start_server(module: str, *args: str, **env: str) -> subprocess.Popen[str]:
    """Start `python -m <module> [args]` (a service's real server process) with extra environment."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_ready(process: subprocess.Popen[str], url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    pytest.fail(f"server did not become ready: {process.communicate()[1][-2000:]}")


@contextmanager
def running_server(module: str, *args: str, **env: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A ready server process on a free loopback port, and its URL; killed afterwards if still up.

    The port is in PORT (the project's `serve`) and UVICORN_PORT (`python -m uvicorn`).
    Its output is piped and read when it stops, so access lines are off unless `env` sets
    ACCESS_LOG (read them in short runs only); for long runs keep LOG_LEVEL at warning too,
    or the output fills the pipe and the server blocks writing to it.
    """
    port = free_port()
    env = {"ACCESS_LOG": "false", **env}
    process = start_server(module, *args, PORT=str(port), UVICORN_PORT=str(port), **env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, url)
        yield process, url
    finally:
        if process.poll() is None:
            # SIGTERM, not SIGKILL: a killed parent would leave its workers holding the pipes open.
            process.terminate()
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def predict_calls(url: str, model: str) -> tuple[float, float]:
    """(predict calls, rows predicted) so far by the server at `url`, from its /metrics."""
    text = httpx.get(f"{url}/metrics").text
    return (
        metric_value(text, "model_batch_size_count", model=model),
        metric_value(text, "model_batch_size_sum", model=model),
    )


def grpc_health(address: str, service: str = "") -> str:
    """The status the gRPC health service at `address` gives `service` ("SERVING", ...), asked
    as Kubernetes' gRPC probe asks."""
    import grpc  # type: ignore[import]  # only the tests that speak gRPC need it
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import]

    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        answer = health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`, in a Prometheus text
    exposition, read by prometheus-client's own parser (timestamps, escapes and all)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def status_of_request_in_flight_at(stop: Callable[[], object], url: str, path: str, body: bytes) -> int:
    """Start a POST (headers and half the body), call `stop` (e.g. send SIGTERM), then finish it.

    Returns the response's status code: a server that drains accepted requests on
    SIGTERM answers it (200); one that drops them closes the connection (0).
    """
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    half = len(body) // 2
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head + body[:half])
        time.sleep(0.3)  # the server has read the headers: the request is in flight
        stop()
        time.sleep(0.5)
        connection.sendall(body[half:])
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    status_line = response.split(b"\r\n", 1)[0].split()
    return int(status_line[1]) if len(status_line) > 1 else 0


def assert_rejected(response: httpx.Response, *fields: str) -> None:
    """The response is a 422 naming exactly `fields` ("body[1].Age"), in its summary too."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert [error["field"] for error in body["fields"]] == list(fields)
    for field in fields:
        assert field in body["error"]


# What every service's /health_check holds, besides the keys it declares itself (`HealthKeys`).
HEALTH_CHECK_KEYS = ("health", "booted_at", "model", "app_revision", "environment")


def out_of_bounds(schema: type[BaseModel]) -> list[tuple[str, Any]]:
    """For each field of `schema` with numeric bounds (`ge`, `gt`, `le`, `lt`), a value just past
    each: what a service must refuse, taken from the schema rather than written again."""
    refused: list[tuple[str, Any]] = []
    for name, info in schema.model_fields.items():
        for constraint in info.metadata:
            for bound, step in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
                limit = getattr(constraint, bound, None)
                if isinstance(limit, int | float) and not isinstance(limit, bool):
                    refused.append((name, limit + step))
    return refused


class ServiceContract:
    """What every model service's API does, whatever its model; subclass as `TestContract`.

    `valid_row` is one row the service must accept; each field the row type
    requires is checked to be required, each float field to refuse NaN and
    infinities, and each number to refuse a boolean or a string in its place.
    `invalid_values` lists (field, value) pairs the service must refuse, each with
    a 422 naming the field.
    """

    service: ClassVar[ModelService[Any, Any]]
    valid_row: ClassVar[dict[str, Any]]
    invalid_values: ClassVar[Sequence[tuple[str, Any]]]
    max_batch_size: ClassVar[int] = 50

    @pytest.fixture(scope="class")
    def client(self) -> Iterator[ServiceClient]:
        with started(self.service, max_batch_size=self.max_batch_size) as client:
            yield client

    def test_each_row_gets_a_prediction_with_the_model_version(self, client: ServiceClient) -> None:
        response = client.predict([self.valid_row] * 3)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["predictions"]) == 3
        version = client.get("/health_check").json()["model"]["version"]
        assert version in [str(value) for value in body["metadata"].values()]

    def test_health_check_has_the_shape_every_service_shares(self, client: ServiceClient) -> None:
        health = client.get("/health_check").json()
        own = list(self.service.health_keys.fields) if self.service.health_keys else []
        assert list(health) == [*HEALTH_CHECK_KEYS[:2], *own, *HEALTH_CHECK_KEYS[2:]]
        assert health["health"] == "OK"
        assert health["model"]["name"] == self.service.name

    def test_empty_list_gives_no_predictions(self, client: ServiceClient) -> None:
        response = client.predict([])
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == []

    def test_missing_required_field_gets_a_422_naming_it(self, client: ServiceClient) -> None:
        required = [
            name for name, field in self.service.item_type.model_fields.items() if field.is_required()
        ]
        assert required
        for absent in required:
            row = {name: value for name, value in self.valid_row.items() if name != absent}
            response = client.predict([self.valid_row, row])
            assert response.status_code == 422
            assert response.json()["fields"] == [
                {"field": f"body[1].{absent}", "message": "Field required", "type": "missing"}
            ]

    def test_invalid_value_gets_a_422_naming_the_field(self, client: ServiceClient) -> None:
        assert self.invalid_values
        for field, value in self.invalid_values:
            assert_rejected(
                client.predict([self.valid_row, {**self.valid_row, field: value}]), f"body[1].{field}"
            )

    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
    def test_non_finite_number_gets_a_422_naming_the_field(self, client: ServiceClient, value: float) -> None:
        numbers = [
            name
            for name, field in self.service.item_type.model_fields.items()
            if float in (field.annotation, *typing.get_args(field.annotation))  # float, float | None
        ]
        assert numbers
        for name in numbers:
            assert_rejected(client.predict([{**self.valid_row, name: value}]), f"body[0].{name}")

    @pytest.mark.parametrize("sent_as", ["a boolean", "a string"])
    def test_a_number_sent_as_something_else_gets_a_422_naming_the_field(
        self, client: ServiceClient, sent_as: str
    ) -> None:
        # Literal[1, 2] fields are left out: pydantic matches `true` to 1, as Python does.
        fields = self.service.item_type.model_fields
        numbers = [
            name
            for name, value in self.valid_row.items()
            if isinstance(value, int | float)
            and not isinstance(value, bool)
            and typing.get_origin(fields[name].annotation) is not Literal
        ]
        assert numbers
        for name in numbers:
            wrong = True if sent_as == "a boolean" else str(self.valid_row[name])
            assert_rejected(client.predict([{**self.valid_row, name: wrong}]), f"body[0].{name}")

    def test_a_single_row_instead_of_a_list_is_a_422(self, client: ServiceClient) -> None:
        assert_rejected(client.predict(self.valid_row), "body")

    def test_batch_over_the_limit_says_the_limit(self, client: ServiceClient) -> None:
        response = client.predict([self.valid_row] * (self.max_batch_size + 1))
        assert response.status_code == 422
        assert f"at most {self.max_batch_size}" in response.json()["error"]

    def test_documented_request_examples_are_accepted(self, client: ServiceClient) -> None:
        operation = client.get("/openapi.json").json()["paths"][client.predict_path]["post"]
        examples = operation["requestBody"]["content"]["application/json"]["examples"]
        assert examples
        for example in examples.values():
            assert client.predict(example["value"]).status_code == 200


def registered_services() -> list[ModelService[Any, Any]]:
    """Every model service of the repo, for the cross-service tests under tests/.

    Their BUILD files pass the services the `./pants` launcher found (each services/<name>/BUILD
    that declares one) as $MODEL_SERVICES and depend on each service's code, so a new service
    is tested without editing any test.
    """
    names = os.environ.get("MODEL_SERVICES", "")
    if not names:
        pytest.fail(
            "MODEL_SERVICES is not set: give the test extra_env_vars=[model_services_env(SERVICES)]", False
        )
    return [importlib.import_module(f"{name}.main").SERVICE for name in names.split(",")]


def example_rows(service: ModelService[Any, Any]) -> list[dict[str, Any]]:
    """The service's examples as JSON rows, without the fields some of them leave unknown (the
    Open Inference Protocol has no nulls)."""
    rows = [example.model_dump(mode="json") for example in service.examples]
    unknown = {key for row in rows for key, value in row.items() if value is None}
    return [{key: value for key, value in row.items() if key not in unknown} for row in rows]


# Two trainings agree only up to rounding on different CPUs (BLAS and OpenMP kernels differ in
# the last bits, and an iterative solver may then stop one step apart), so a retrained model is
# compared with the committed one within these tolerances, never with ==. A changed seed,
# hyperparameter or data set moves predictions by orders of magnitude more (test_training.py).
PREDICTION_TOLERANCE = 1e-4  # relative and absolute, per predicted value
METRIC_TOLERANCE = 1e-3  # absolute, per model-card metric (cards round them to 4 places)


def assert_same_predictions(retrained: Any, committed: Any, what: str = "") -> None:
    """Two trainings' outputs (`what`) agree: floats within PREDICTION_TOLERANCE, anything else exactly."""
    retrained, committed = np.asarray(retrained), np.asarray(committed)
    assert retrained.shape == committed.shape, (what, retrained.shape, committed.shape)
    if np.issubdtype(committed.dtype, np.floating):
        np.testing.assert_allclose(
            retrained, committed, rtol=PREDICTION_TOLERANCE, atol=PREDICTION_TOLERANCE, err_msg=what
        )
    else:
        np.testing.assert_array_equal(retrained, committed, err_msg=what)


def as_served(service: ModelService[Any, Any], loaded: LoadedModel) -> LoadedModel:
    """A loaded model as the service serves it: after its `prepare` (arrays into a model), if any."""
    return service.prepare(loaded) if service.prepare is not None else loaded


def retrained_and_committed(
    train_main: Callable[[list[str]], None], service: ModelService[Any, Any], output_dir: Path
) -> tuple[LoadedModel, LoadedModel]:
    """Retrain into `output_dir`; check its card agrees with the committed one; return both models.

    Training is deterministic up to the CPU's rounding, so a difference beyond the tolerances
    above means the committed model is stale (retrain and commit it) or training lost its
    determinism. Artifacts are not compared byte for byte: pickles of equal models can differ
    between processes. Compare the two models' predictions with `assert_same_predictions`.
    """
    train_main(["--output-dir", str(output_dir)])
    retrained = load_model(output_dir, expected_name=service.name, artifact_format=service.artifact_format)
    committed = load_model(
        service.model_dir, expected_name=service.name, artifact_format=service.artifact_format
    )
    assert retrained.card.training_data_sha256 == committed.card.training_data_sha256
    assert retrained.card.metrics.keys() == committed.card.metrics.keys()
    for metric, value in committed.card.metrics.items():
        retrained_value = retrained.card.metrics[metric]
        assert retrained_value == pytest.approx(
            value, abs=METRIC_TOLERANCE
        ), f"{metric}: {retrained_value} != {value}"
    assert_same_reference(retrained.card, committed.card)
    return retrained, committed


def assert_same_reference(retrained: ModelCard, committed: ModelCard) -> None:
    """Two trainings' reference distributions: the same features and bins (edges within
    PREDICTION_TOLERANCE), each share within METRIC_TOLERANCE (a score near an edge may move)."""
    assert (retrained.reference is None) == (committed.reference is None), "one card has no reference"
    if retrained.reference is None or committed.reference is None:
        return
    ours, theirs = retrained.reference, committed.reference
    assert ours.rows == theirs.rows
    assert list(ours.features) == list(theirs.features)
    pairs: list[tuple[str, Any, Any]] = [
        (name, ours.features[name], theirs.features[name]) for name in ours.features
    ]
    if ours.scores is not None or theirs.scores is not None:
        assert ours.scores is not None and theirs.scores is not None, "one card has no scores"
        pairs.append(("scores", ours.scores, theirs.scores))
    for name, mine, other in pairs:
        edges = getattr(other, "edges", None)
        if edges is not None:
            assert_same_predictions(getattr(mine, "edges", None), edges, what=f"{name} edges")
        else:
            assert mine.bins == other.bins, name
        for (label, share), expected in zip(mine.shares.items(), other.shares.values(), strict=True):
            assert share == pytest.approx(
                expected, abs=METRIC_TOLERANCE
            ), f"{name} {label}: {share} != {expected}"
