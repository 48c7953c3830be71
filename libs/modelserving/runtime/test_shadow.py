"""The shadow (runtime/shadow.py) against a real HTTP candidate on loopback: a server in this
test that agrees, disagrees, hangs, fails or answers garbage, as each test tells it.

The primary is the toy service (conftest.py: `value` = 3 * x, model version 7.1), declaring its
`value` a score that agrees within 0.5. Every expected number below is worked out by hand from
the rows sent and the candidate's answers to them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from modelserving import ModelService, Settings, SettingsError
from modelserving.dev.testing import free_port, loopback_http_server, raised
from modelserving.outputs import ClassOutput, ScoreOutput
from modelserving.runtime import shadow as shadow_module
from modelserving.runtime.dataplane import DataPlane
from modelserving.runtime.shadow import agreement
from modelserving.server.app import create_app
from modelserving.server.serve import serve

TOKEN = "shadow-test-token-0123456789abcdef"
AUTHORIZATION = f"Bearer {TOKEN}"
VALUE = ScoreOutput("value", edges=(0.0,), tolerance=0.5)
PRIMARY_VERSION, CANDIDATE_VERSION = "7.1", "8.0"


@dataclass
class CandidateServer:
    """What the candidate does with each POST, and what it got (path, headers, body)."""

    answer: Callable[[list[dict[str, Any]]], tuple[int, bytes]]
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    got_one: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)  # ends a hang
    metadata: bool = True
    version: str = CANDIDATE_VERSION  # the model version its metadata names
    # How answers are framed: "length" (Content-Length, kept alive), "chunked", "close" (with
    # Connection: close), "silent-close" (closed after answering, unannounced: the client finds a
    # dead kept-alive connection), "http/1.0" (no length: the body runs until the connection closes).
    framing: str = "length"
    url: str = ""


def values(table: dict[float, float]) -> Callable[[list[dict[str, Any]]], tuple[int, bytes]]:
    """A candidate answering each row's `x` with `table[x]`, in the toy service's response shape."""

    def answer(rows: list[dict[str, Any]]) -> tuple[int, bytes]:
        body = {"predictions": [{"value": table[row["x"]]} for row in rows], "version": CANDIDATE_VERSION}
        return 200, json.dumps(body).encode()

    return answer


def same_as_primary(rows: list[dict[str, Any]]) -> tuple[int, bytes]:
    body = {"predictions": [{"value": 3.0 * row["x"]} for row in rows], "version": CANDIDATE_VERSION}
    return 200, json.dumps(body).encode()


@pytest.fixture
def candidate() -> Iterator[CandidateServer]:
    state = CandidateServer(answer=same_as_primary)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes) -> None:
            request_id = self.headers.get("x-request-id")
            if state.framing == "http/1.0":
                head = f"HTTP/1.0 {status} Whatever\r\ncontent-type: application/json\r\n"
                head += f"x-request-id: {request_id}\r\n" if request_id else ""
                self.wfile.write(head.encode() + b"\r\n" + body)
                self.close_connection = True
                return
            self.send_response(status)
            self.send_header("content-type", "application/json")
            if request_id:
                self.send_header("x-request-id", request_id)
            if state.framing == "chunked":
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                half = len(body) // 2
                for chunk in (body[:half], body[half:]):
                    self.wfile.write(f"{len(chunk):x};ext=1\r\n".encode() + chunk + b"\r\n")
                self.wfile.write(b"0\r\nx-trailer: yes\r\n\r\n")
                return
            self.send_header("content-length", str(len(body)))
            if state.framing == "close":
                self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(body)
            if state.framing in ("close", "silent-close"):
                self.close_connection = True

        def do_GET(self) -> None:
            if self.path == "/v2/models/toy" and state.metadata:
                self._send(200, json.dumps({"name": "toy", "versions": [state.version]}).encode())
            else:
                self._send(404, b'{"error": "no such route"}')

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            state.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            state.got_one.set()
            status, answer = state.answer(json.loads(body))
            if status == 0:  # hang, until the test ends
                state.release.wait(30)
                return
            self._send(status, answer)

    with loopback_http_server(Handler) as url:
        state.url = url
        try:
            yield state
        finally:
            state.release.set()  # before the server stops: a hung handler returns


@pytest.fixture
def scored(toy_service: ModelService[Any, Any]) -> ModelService[Any, Any]:
    return replace(toy_service, output=VALUE)


def shadowed(service: ModelService[Any, Any], url: str, **settings: Any) -> TestClient:
    config = Settings(auth_token=SecretStr(TOKEN), shadow_url=url, **settings)
    return TestClient(create_app(service, config), headers={"authorization": AUTHORIZATION})


def plane(client: TestClient) -> DataPlane:
    app: FastAPI = client.app  # type: ignore[assignment]
    return cast(DataPlane, app.state.plane)


def queued(client: TestClient) -> int:
    shadow = plane(client).shadow
    assert shadow is not None
    return shadow.queued


def sample(client: TestClient, name: str, **labels: str) -> float:
    value = plane(client).metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


def outcome(client: TestClient, what: str) -> float:
    return sample(client, "model_shadow_requests_total", model="toy", version=PRIMARY_VERSION, outcome=what)


def rows(client: TestClient, agreed: str, candidate_version: str = CANDIDATE_VERSION) -> float:
    return sample(
        client,
        "model_shadow_rows_total",
        model="toy",
        version=PRIMARY_VERSION,
        candidate_version=candidate_version,
        agreed=agreed,
    )


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def outcomes_total(client: TestClient) -> float:
    return sum(
        outcome(client, what)
        for what in ("compared", "dropped", "timeout", "unreachable", "rejected", "invalid")
    )


def test_agreement_is_counted_row_by_row(scored: ModelService[Any, Any], candidate: CandidateServer) -> None:
    # The primary answers 3x: 3, 6, 9, 12 and 0. The candidate: 3.0 (off by 0), 6.4 (0.4),
    # 9.6 (0.6), 17 (5) and 0. Within 0.5: rows 1, 2 and 0 agree; 3 and 4 do not.
    candidate.answer = values({1: 3.0, 2: 6.4, 3: 9.6, 4: 17.0, 0: 0.0})
    batch = b'[ {"x": 1}, {"x": 2},\n {"x": 3}, {"x": 4} ]'  # spaced as a client sent it
    json_headers = {"content-type": "application/json"}
    with shadowed(scored, candidate.url) as client:
        for number in range(3):
            response = client.post(
                "/scale", content=batch, headers={**json_headers, "x-request-id": f"batch-{number}"}
            )
            assert response.status_code == 200
        response = client.post(
            "/scale", content=b'[{"x":0}]', headers={**json_headers, "x-request-id": "zero"}
        )
        assert response.status_code == 200
        wait_for(lambda: outcome(client, "compared") == 4)
        assert rows(client, "true") == 3 * 2 + 1
        assert rows(client, "false") == 3 * 2
        assert outcomes_total(client) == 4  # nothing failed, nothing dropped

        # As Prometheus scrapes it: the agreement ratio is agreed / all rows.
        families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
        scraped = {
            s.labels["agreed"]: s.value
            for s in families["model_shadow_rows"].samples
            if s.name == "model_shadow_rows_total"
        }
        assert scraped == {"true": 7.0, "false": 6.0}
        assert all(
            s.labels["candidate_version"] == CANDIDATE_VERSION and s.labels["version"] == PRIMARY_VERSION
            for s in families["model_shadow_rows"].samples
        )

    # The candidate got each request as the client sent it: body (byte for byte), request id and token.
    assert [r[2] for r in candidate.received] == [batch] * 3 + [b'[{"x":0}]']
    assert [r[1]["x-request-id"] for r in candidate.received] == ["batch-0", "batch-1", "batch-2", "zero"]
    assert {r[0] for r in candidate.received} == {"/scale"}
    assert {r[1]["authorization"] for r in candidate.received} == {AUTHORIZATION}
    assert {r[1]["x-shadow"] for r in candidate.received} == {"1"}


def test_a_connection_is_renewed_so_that_new_pods_behind_the_url_are_reached(
    scored: ModelService[Any, Any], candidate: CandidateServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As when the canary Service moves from stable's pods to the canary's: the candidate behind
    # the URL becomes version 9.0. A kept-alive connection would keep reaching the old one.
    with shadowed(scored, candidate.url) as client:
        assert client.post("/scale", json=[{"x": 1}]).status_code == 200
        wait_for(lambda: outcome(client, "compared") == 1)
        candidate.version = "9.0"
        monkeypatch.setattr(shadow_module, "CONNECTION_SECONDS", 0.0)
        assert client.post("/scale", json=[{"x": 1}]).status_code == 200
        wait_for(lambda: outcome(client, "compared") == 2)
        assert (rows(client, "true"), rows(client, "true", candidate_version="9.0")) == (1, 1)


def test_the_client_never_sees_the_candidates_answer(
    scored: ModelService[Any, Any], candidate: CandidateServer
) -> None:
    candidate.answer = values({1: 1000.0, 2: -1000.0})  # wrong on every row
    with shadowed(scored, candidate.url) as client:
        for _ in range(5):
            response = client.post("/scale", json=[{"x": 1}, {"x": 2}])
            assert response.status_code == 200
            assert response.json() == {"predictions": [{"value": 3.0}, {"value": 6.0}], "version": "7.1"}
            assert "1000" not in response.text
        wait_for(lambda: outcome(client, "compared") == 5)
        assert (rows(client, "true"), rows(client, "false")) == (0, 10)


def test_a_hung_candidate_fills_the_queue_and_the_rest_are_dropped_while_the_primary_answers(
    scored: ModelService[Any, Any], candidate: CandidateServer
) -> None:
    candidate.answer = lambda rows: (0, b"")  # never answers
    client = shadowed(scored, candidate.url, shadow_queue_size=2, shadow_timeout_seconds=3.0)
    with client:
        assert client.post("/scale", json=[{"x": 1}]).status_code == 200
        assert candidate.got_one.wait(5), "the first request never reached the candidate"
        # The mirror now waits (3 s) on the first; 2 of the next 20 wait in the queue, 18 are dropped.
        slowest = 0.0
        for _ in range(20):
            started = time.perf_counter()
            response = client.post("/scale", json=[{"x": 2}])
            slowest = max(slowest, time.perf_counter() - started)
            assert response.json()["predictions"] == [{"value": 6.0}]
        assert slowest < 0.5, f"a request took {slowest:.3f} s with the candidate hung"
        assert outcome(client, "dropped") == 18
        assert queued(client) == 2
        closing = time.perf_counter()
    # Shutdown waits for the hung request no longer than SHADOW_TIMEOUT_SECONDS; the queued 2 are dropped.
    assert time.perf_counter() - closing < 3.0 + 1.5
    assert outcome(client, "dropped") == 20
    assert outcome(client, "timeout") == 1  # the first, which the candidate never answered
    assert outcome(client, "compared") == 0


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        (lambda rows: (500, b'{"error": "boom"}'), "rejected"),
        (lambda rows: (401, b'{"error": "no token"}'), "rejected"),
        (lambda rows: (200, b"<html>not json</html>"), "invalid"),
        (lambda rows: (200, b'{"predictions": [], "version": "8.0"}'), "invalid"),  # rows missing
        (lambda rows: (200, b'{"predictions": [{"score": 1}], "version": "8.0"}'), "invalid"),  # no `value`
        (lambda rows: (200, b'{"predictions": [{"value": "many"}], "version": "8.0"}'), "invalid"),
        (lambda rows: (0, b""), "timeout"),  # hangs past SHADOW_TIMEOUT_SECONDS
        (None, "unreachable"),  # nothing listens
    ],
    ids=["500", "401", "not-json", "too-few-rows", "no-output", "not-a-number", "hang", "down"],
)
def test_a_failing_candidate_is_counted_and_never_fails_the_primary(
    scored: ModelService[Any, Any], candidate: CandidateServer, behaviour: Any, expected: str
) -> None:
    url = candidate.url
    if behaviour is None:
        url = f"http://127.0.0.1:{free_port()}"
    else:
        candidate.answer = behaviour
    with shadowed(scored, url, shadow_timeout_seconds=0.3) as client:
        for _ in range(3):
            response = client.post("/scale", json=[{"x": 1}])
            assert response.status_code == 200
            assert response.json()["predictions"] == [{"value": 3.0}]
        wait_for(lambda: outcome(client, expected) == 3)
        assert outcomes_total(client) == 3
        assert rows(client, "true") + rows(client, "false") == 0


@pytest.mark.parametrize("framing", ["length", "chunked", "close", "silent-close", "http/1.0"])
def test_every_framing_of_an_answer_is_read(
    scored: ModelService[Any, Any], candidate: CandidateServer, framing: str
) -> None:
    candidate.framing = framing
    candidate.answer = values({1: 3.0, 2: 7.0})  # the second row of each request disagrees
    with shadowed(scored, candidate.url) as client:
        for _ in range(3):
            assert client.post("/scale", json=[{"x": 1}, {"x": 2}]).is_success
        wait_for(lambda: outcomes_total(client) == 3)
        assert outcome(client, "compared") == 3
        assert (rows(client, "true"), rows(client, "false")) == (3, 3)


def test_the_sample_rate_is_honoured(scored: ModelService[Any, Any], candidate: CandidateServer) -> None:
    # 400 requests at 0.25: 100 expected, standard deviation sqrt(400 * 0.25 * 0.75) = 8.7;
    # 60 to 140 is over 4.5 deviations either side (a false failure about once in 200,000 runs).
    with shadowed(scored, candidate.url, shadow_sample_rate=0.25, shadow_queue_size=1000) as client:
        for _ in range(400):
            assert client.post("/scale", json=[{"x": 1}]).status_code == 200
        wait_for(lambda: queued(client) == 0)
        wait_for(lambda: outcomes_total(client) == len(candidate.received))
        mirrored = len(candidate.received)
        assert 60 <= mirrored <= 140, mirrored
        assert outcome(client, "compared") == mirrored
        assert rows(client, "true") == mirrored


def test_a_mirrored_request_is_not_mirrored_again(
    scored: ModelService[Any, Any], candidate: CandidateServer
) -> None:
    with shadowed(scored, candidate.url) as client:
        # One mirror thread, first in first out: when the second arrives, the first was skipped.
        assert client.post(
            "/scale", json=[{"x": 1}], headers={"x-shadow": "1", "x-request-id": "a"}
        ).is_success
        assert client.post("/scale", json=[{"x": 1}], headers={"x-request-id": "b"}).is_success
        wait_for(lambda: outcome(client, "compared") == 1)
    assert [r[1]["x-request-id"] for r in candidate.received] == ["b"]


def test_without_the_candidates_metadata_its_version_is_unknown(
    scored: ModelService[Any, Any], candidate: CandidateServer
) -> None:
    candidate.metadata = False
    with shadowed(scored, candidate.url) as client:
        assert client.post("/scale", json=[{"x": 1}, {"x": 2}]).is_success
        wait_for(lambda: outcome(client, "compared") == 1)
        assert rows(client, "true", candidate_version="unknown") == 2
        assert rows(client, "true") == 0


def test_agreement_of_classes_and_of_scores() -> None:
    species = ClassOutput("species", classes=("setosa", "versicolor", "virginica"))
    ours = '{"predictions": [{"species": "setosa"}, {"species": "virginica"}, {"species": "setosa"}]}'
    theirs = b'{"predictions": [{"species": "setosa"}, {"species": "versicolor"}, {"species": "setosa"}]}'
    assert agreement(species, "predictions", ours, theirs) == (2, 1)
    score = ScoreOutput("score", edges=(0.5,), tolerance=0.05)
    ours = '{"predictions": [{"score": 0.5}, {"score": 0.5}, {"score": 0.9}]}'
    theirs = b'{"predictions": [{"score": 0.54}, {"score": 0.56}, {"score": 0.1}]}'
    assert agreement(score, "predictions", ours, theirs) == (1, 2)
    for garbage in (b"", b"[]", b'{"predictions": {}}', b'{"predictions": [1, 2, 3]}', b'{"rows": []}'):
        with pytest.raises(ValueError, match="cannot be compared"):
            agreement(score, "predictions", ours, garbage)


def test_a_service_without_an_output_refuses_a_shadow_url(
    toy_service: ModelService[Any, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SettingsError) as caught:
        create_app(toy_service, Settings(allow_unauthenticated=True, shadow_url="http://127.0.0.1:9"))
    assert "ModelService.output" in str(caught.value) and "\n" not in str(caught.value)
    # As `serve` starts: one line, exit code 2, before any server.
    monkeypatch.setenv("SHADOW_URL", "http://candidate:8000")
    monkeypatch.setenv("ALLOW_UNAUTHENTICATED", "true")
    with pytest.raises(SystemExit) as exited:
        serve(toy_service, "unused:create_app")
    assert raised(exited).code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("toy: SHADOW_URL is set, but service 'toy' declares no output")


def test_the_mirror_thread_yields_the_cpu_to_serving(
    scored: ModelService[Any, Any], candidate: CandidateServer
) -> None:
    with shadowed(scored, candidate.url) as client:
        assert client.post("/scale", json=[{"x": 1}]).is_success
        wait_for(lambda: outcome(client, "compared") == 1)
        (mirror,) = (thread for thread in threading.enumerate() if thread.name == "toy-shadow")
        serving = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        assert os.getpriority(os.PRIO_PROCESS, mirror.native_id or 0) == serving + 10
