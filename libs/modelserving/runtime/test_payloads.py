"""Payload logging (runtime/payloads.py) of the toy service, to a real HTTP receiver in this test
and to a JSON-lines file: the events' content over every route, the redaction of personal
fields, the sample rate and the drop path.

The toy service (conftest.py) answers each row's `x` with 3 * x, model version 7.1; here its row
also carries a `name` marked PERSONAL and a `note` that is not. Each expected value below is
written out by hand, or computed with the standard library from the values sent (the keyed
hashes), never by the module under test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, cast

import grpc  # type: ignore[import]
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from cloudevents.core.formats.json import JSONFormat
from fastapi import FastAPI
from fastapi.testclient import TestClient
from inference_grpc import grpc_predict_v2_pb2 as pb  # pants: no-infer-dep (compiled in the build)
from pydantic import BaseModel, Field, SecretStr

from modelserving import ModelService, Settings
from modelserving.dev.testing import free_port, loopback_http_server, raised
from modelserving.runtime.dataplane import DataPlane
from modelserving.runtime.payloads import PayloadLog
from modelserving.server.app import create_app
from modelserving.server.serve import serve
from modelserving.service import PERSONAL, personal_fields

TOKEN = "payload-test-token-0123456789abcdef"
AUTHORIZATION = f"Bearer {TOKEN}"
KEY = "payload-hash-key-0123456789"
NAME = "Kelly, Mr. James"
VERSION = "7.1"


class PersonRow(BaseModel):
    x: float = Field(ge=-1000, le=1000, allow_inf_nan=False)
    name: str | None = Field(default=None, max_length=100, json_schema_extra=PERSONAL)
    note: str | None = None


@pytest.fixture
def personal(toy_service: ModelService[Any, Any]) -> ModelService[Any, Any]:
    return replace(toy_service, item_type=PersonRow, examples=[PersonRow(x=1.0)])


def keyed_hash(value: str) -> str:
    return "hmac-sha256:" + hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


@dataclass
class Receiver:
    """An HTTP endpoint taking events: what it got (headers, body), and what it answers."""

    status: int = 202
    hang: bool = False
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    got_one: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)  # ends a hang
    url: str = ""

    def events(self) -> list[Any]:
        return [from_http_event(HTTPMessage(headers=headers, body=body)) for headers, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            state.got_one.set()
            if state.hang:
                state.release.wait(30)
                return
            self.send_response(state.status)
            self.send_header("content-length", "0")
            self.end_headers()

    with loopback_http_server(Handler) as url:
        state.url = f"{url}/events"
        try:
            yield state
        finally:
            state.release.set()  # before the server stops: a hung handler returns


def logging_client(service: ModelService[Any, Any], **settings: Any) -> TestClient:
    config = Settings(auth_token=SecretStr(TOKEN), **settings)
    return TestClient(create_app(service, config), headers={"authorization": AUTHORIZATION})


def plane(client: TestClient) -> DataPlane:
    app: FastAPI = client.app  # type: ignore[assignment]
    return cast(DataPlane, app.state.plane)


def outcome(client: TestClient, what: str) -> float:
    value = plane(client).metrics.registry.get_sample_value(
        "model_payload_events_total", {"model": "toy", "version": VERSION, "outcome": what}
    )
    return 0.0 if value is None else float(value)


def outcomes_total(client: TestClient) -> float:
    return sum(
        outcome(client, what)
        for what in ("logged", "dropped", "timeout", "unreachable", "rejected", "failed")
    )


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def lines(path: Path) -> list[Any]:
    return [JSONFormat().read(None, line) for line in path.read_bytes().splitlines()]


def test_every_routes_answers_reach_the_endpoint_as_cloudevents_with_personal_fields_hashed(
    personal: ModelService[Any, Any], receiver: Receiver
) -> None:
    grpc_port = free_port()
    before = datetime.now(UTC)
    client = logging_client(
        personal,
        grpc_port=grpc_port,
        payload_log_url=receiver.url,
        payload_log_sample_rate=1.0,
        payload_log_hash_key=SecretStr(KEY),
    )
    with client, grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        typed = client.post(
            "/scale",
            json=[{"x": 1, "name": NAME, "note": "kept"}, {"x": 2}],
            headers={"x-request-id": "typed-1", "cookie": "session=secret-cookie"},
        )
        assert typed.json()["predictions"] == [{"value": 3.0}, {"value": 6.0}]
        v2 = client.post(
            "/v2/models/toy/infer",
            json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [4.0]}]},
            headers={"x-request-id": "v2-rest-1"},
        )
        assert v2.json()["outputs"][0]["data"] == [12.0]
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        x = pb.ModelInferRequest.InferInputTensor(
            name="x", datatype="FP64", shape=[1], contents=pb.InferTensorContents(fp64_contents=[5.0])
        )
        infer(
            pb.ModelInferRequest(model_name="toy", inputs=[x]),
            metadata=[("authorization", AUTHORIZATION), ("x-request-id", "grpc-1")],
            timeout=10,
        )
        wait_for(lambda: outcome(client, "logged") == 3)
        assert outcomes_total(client) == 3
    after = datetime.now(UTC)

    # One POST per request, in binary mode, to the endpoint's own path.
    assert len(receiver.received) == 3
    assert {headers["content-type"] for headers, _ in receiver.received} == {"application/json"}
    events = {event.get_extension("requestid"): event for event in receiver.events()}
    assert set(events) == {"typed-1", "v2-rest-1", "grpc-1"}
    assert len({event.get_id() for event in events.values()}) == 3
    for event in events.values():
        assert event.get_type() == "modelserving.inference.payload"
        assert event.get_source() == "/modelserving/toy"
        assert event.get_specversion() == "1.0"
        assert event.get_extension("modelversion") == VERSION
        assert before <= event.get_time() <= after

    typed_event = events["typed-1"]
    assert typed_event.get_extension("protocol") == "rest"
    assert typed_event.get_data() == {
        "model_name": "toy",
        "model_version": VERSION,
        "request_id": "typed-1",
        "protocol": "rest",
        "route": "/scale",
        "rows": [
            {"x": 1.0, "name": keyed_hash(NAME), "note": "kept"},
            {"x": 2.0, "name": None, "note": None},
        ],
        "response": {"predictions": [{"value": 3.0}, {"value": 6.0}], "version": VERSION},
        "personal": {"name": "hmac-sha256"},
    }
    v2_data = events["v2-rest-1"].get_data()
    assert (v2_data["protocol"], v2_data["route"]) == (
        "v2-rest",
        "/v2/models/{model_name}[/versions/{model_version}]/infer",
    )
    assert v2_data["rows"] == [{"x": 4.0, "name": None, "note": None}]
    assert v2_data["response"] == {"predictions": [{"value": 12.0}], "version": VERSION}
    grpc_data = events["grpc-1"].get_data()
    assert (grpc_data["protocol"], grpc_data["route"]) == (
        "v2-grpc",
        "/inference.GRPCInferenceService/ModelInfer",
    )
    assert grpc_data["rows"] == [{"x": 5.0, "name": None, "note": None}]
    assert grpc_data["response"] == {"predictions": [{"value": 15.0}], "version": VERSION}

    # Neither the name, nor the token, nor any header the clients sent is anywhere in what was posted.
    posted = b"".join(json.dumps(headers).encode() + body for headers, body in receiver.received).lower()
    for secret in (NAME, TOKEN, KEY, "authorization", "bearer", "cookie"):
        assert secret.lower().encode() not in posted, secret


def test_without_a_key_personal_fields_are_left_out_of_the_file(
    personal: ModelService[Any, Any], tmp_path: Path
) -> None:
    path = tmp_path / "payloads.jsonl"
    with logging_client(personal, payload_log_file=path, payload_log_sample_rate=1.0) as client:
        for number in range(3):
            response = client.post(
                "/scale",
                json=[{"x": number, "name": NAME, "note": f"n{number}"}],
                headers={"x-request-id": f"f-{number}"},
            )
            assert response.status_code == 200
    # Shutdown drains the queue (within PAYLOAD_LOG_TIMEOUT_SECONDS): all three were written.
    assert outcome(client, "logged") == 3
    written = lines(path)
    assert [event.get_extension("requestid") for event in written] == ["f-0", "f-1", "f-2"]
    assert [event.get_data()["rows"] for event in written] == [
        [{"x": 0.0, "note": "n0"}],
        [{"x": 1.0, "note": "n1"}],
        [{"x": 2.0, "note": "n2"}],
    ]
    assert {json.dumps(event.get_data()["personal"]) for event in written} == {'{"name": "dropped"}'}
    assert [event.get_data()["response"]["predictions"] for event in written] == [
        [{"value": 0.0}],
        [{"value": 3.0}],
        [{"value": 6.0}],
    ]
    text = path.read_text()
    assert "Kelly" not in text and TOKEN not in text
    assert len(text.splitlines()) == 3  # one JSON object per line


def test_the_sample_rate_is_honoured(toy_service: ModelService[Any, Any], tmp_path: Path) -> None:
    # 2000 requests at 0.25: 500 expected, standard deviation sqrt(2000 * 0.25 * 0.75) = 19.4;
    # 400 to 600 is over 5 deviations either side (a false failure about once in 4 million runs).
    path = tmp_path / "payloads.jsonl"
    settings = {"payload_log_file": path, "payload_log_sample_rate": 0.25, "payload_log_queue_size": 2000}
    with logging_client(toy_service, **settings) as client:
        for number in range(2000):
            assert client.post("/scale", json=[{"x": number % 7}]).status_code == 200
        payloads = plane(client).payloads
        assert payloads is not None
        started: PayloadLog = payloads
        wait_for(lambda: started.queued == 0)
        wait_for(lambda: outcomes_total(client) == len(path.read_bytes().splitlines()))
        logged = outcome(client, "logged")
    assert 400 <= logged <= 600, logged
    assert len(lines(path)) == logged
    assert outcome(client, "dropped") == 0


def test_a_hung_endpoint_fills_the_queue_and_the_rest_are_dropped_while_predictions_are_answered(
    toy_service: ModelService[Any, Any], receiver: Receiver
) -> None:
    receiver.hang = True
    settings = {
        "payload_log_url": receiver.url,
        "payload_log_sample_rate": 1.0,
        "payload_log_queue_size": 2,
        "payload_log_timeout_seconds": 2.0,
    }
    with logging_client(toy_service, **settings) as client:
        assert client.post("/scale", json=[{"x": 1}]).status_code == 200
        assert receiver.got_one.wait(5), "the first event never reached the endpoint"
        # The logger now waits (2 s) on the first; 2 of the next 20 wait in the queue, 18 are dropped.
        for _ in range(20):
            response = client.post("/scale", json=[{"x": 2}])
            assert response.json()["predictions"] == [{"value": 6.0}]
        assert outcome(client, "dropped") == 18
        payloads = plane(client).payloads
        assert payloads is not None and payloads.queued == 2
    # Shutdown gives the queue PAYLOAD_LOG_TIMEOUT_SECONDS to drain, then drops what is left; the
    # event in hand then ends in its own timeout. Every sampled request has an outcome, and none
    # was logged (the endpoint never answered).
    wait_for(lambda: outcomes_total(client) == 21)
    assert outcome(client, "logged") == 0
    assert outcome(client, "timeout") >= 1
    assert outcome(client, "dropped") >= 18


@pytest.mark.parametrize(("status", "expected"), [(500, "rejected"), (None, "unreachable")])
def test_a_failing_endpoint_is_counted_and_never_fails_a_prediction(
    toy_service: ModelService[Any, Any], receiver: Receiver, status: int | None, expected: str
) -> None:
    url = receiver.url if status is not None else f"http://127.0.0.1:{free_port()}/events"
    receiver.status = status or 202
    with logging_client(toy_service, payload_log_url=url, payload_log_sample_rate=1.0) as client:
        for _ in range(3):
            assert client.post("/scale", json=[{"x": 1}]).json()["predictions"] == [{"value": 3.0}]
        wait_for(lambda: outcome(client, expected) == 3)
        assert outcomes_total(client) == 3


def test_off_by_default(toy_service: ModelService[Any, Any]) -> None:
    with logging_client(toy_service) as client:
        assert client.post("/scale", json=[{"x": 1}]).status_code == 200
        assert plane(client).payloads is None
        assert outcomes_total(client) == 0


def test_a_schema_marks_its_personal_fields(toy_service: ModelService[Any, Any]) -> None:
    assert personal_fields(PersonRow) == ("name",)
    assert personal_fields(toy_service.item_type) == ()
    assert PersonRow.model_json_schema()["properties"]["name"]["x-personal"] is True


def test_bad_settings_stop_the_process_in_one_line(
    toy_service: ModelService[Any, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ValueError, match="at most one of PAYLOAD_LOG_URL and PAYLOAD_LOG_FILE"):
        Settings(payload_log_url="http://collector:8080/", payload_log_file=tmp_path / "events.jsonl")
    with pytest.raises(ValueError, match="http"):
        Settings(payload_log_url="ftp://collector/")
    with pytest.raises(ValueError, match="at least 16"):
        Settings(payload_log_hash_key=SecretStr("short"))
    # As `serve` starts: a file it cannot append to (a directory that is not there, or the read-only
    # root of a container) is one line, exit code 2, before any server.
    monkeypatch.setenv("PAYLOAD_LOG_FILE", str(tmp_path / "missing" / "events.jsonl"))
    monkeypatch.setenv("ALLOW_UNAUTHENTICATED", "true")
    with pytest.raises(SystemExit) as exited:
        serve(toy_service, "unused:create_app")
    assert raised(exited).code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("toy: PAYLOAD_LOG_FILE=") and "cannot be opened for appending" in line
