"""The real server process: settings from the environment, JSON logs, clean start and stop."""

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc  # type: ignore[import]
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import]

from modelserving.dev.testing import (
    free_port,
    predict_calls,
    running_server,
    start_server,
    status_of_request_in_flight_at,
)
from titanic.main import SERVICE


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    with running_server(
        "titanic.main", APP_REVISION="test-rev", LOG_LEVEL="INFO", ACCESS_LOG="true"
    ) as started:
        yield started


def test_serves_predictions_over_http(server: tuple[subprocess.Popen[str], str]) -> None:
    _, url = server
    passengers = [example.model_dump() for example in SERVICE.examples]
    response = httpx.post(f"{url}/predict_survival_by_passengers", json=passengers)
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 2
    assert httpx.get(f"{url}/health_check").json()["app_revision"] == "test-rev"


def test_sigterm_stops_cleanly_with_json_logs(server: tuple[subprocess.Popen[str], str]) -> None:
    process, url = server
    httpx.get(f"{url}/livez", headers={"X-Request-ID": "trace-me"})
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    access = [r for r in records if r.get("request_id") == "trace-me"]
    assert access and access[0]["path"] == "/livez" and access[0]["status"] == 200
    assert any(r["message"] == "model ready" for r in records)
    # Served without tokens (the tests allow it, as `./pants run` does), and said so at start-up.
    assert any(
        r["level"] == "warning"
        and r["message"] == "serving WITHOUT authentication: ALLOW_UNAUTHENTICATED=true"
        for r in records
    )


def test_request_in_flight_at_sigterm_completes() -> None:
    passengers = json.dumps([example.model_dump() for example in SERVICE.examples]).encode()
    with running_server("titanic.main", LOG_LEVEL="WARNING") as (process, url):
        status = status_of_request_in_flight_at(
            lambda: process.send_signal(signal.SIGTERM), url, "/predict_survival_by_passengers", passengers
        )
        process.communicate(timeout=30)
    assert status == 200
    assert process.returncode == 0


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PORT": "eighty"}, "invalid setting PORT='eighty'"),
        ({"WORKERS": "0"}, "invalid setting WORKERS='0'"),
        ({"MODEL_DIR": "/nonexistent"}, "model card not found: /nonexistent/model_card.json"),
        (
            {"AUTH_TOKEN_FILE": "/nonexistent/tokens"},
            "AUTH_TOKEN_FILE='/nonexistent/tokens': FileNotFoundError",
        ),
        ({"AUTH_TOKEN": "short"}, "auth tokens must be at least 16 printable ASCII characters"),
        ({"ENVIRONMENT": "prod"}, "ENVIRONMENT=prod needs AUTH_TOKEN_FILE or AUTH_TOKEN"),
        (
            {"ALLOW_UNAUTHENTICATED": "false"},
            "no AUTH_TOKEN_FILE or AUTH_TOKEN: give the tokens clients must send",
        ),
        ({"ROOT_PATH": "titanic/"}, "invalid setting ROOT_PATH='titanic/'"),
    ],
)
def test_bad_start_up_is_one_clear_line(env: dict[str, str], expected: str) -> None:
    process = start_server("titanic.main", **env)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert expected in lines[0]


def test_a_taken_grpc_port_is_one_clear_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_server("titanic.main", GRPC_PORT=str(port), WORKERS="2")
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert stderr.strip() == f"titanic: GRPC_PORT={port} is in use on 127.0.0.1"


def test_every_worker_serves_grpc_and_stops_cleanly() -> None:
    port = free_port()
    with running_server("titanic.main", WORKERS="2", GRPC_PORT=str(port), LOG_LEVEL="WARNING") as (
        process,
        _,
    ):
        for _ in range(6):  # new connections, which the kernel spreads over the workers
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert check.status == health_pb2.HealthCheckResponse.SERVING
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 0


def test_metrics_add_up_across_workers() -> None:
    with running_server("titanic.main", WORKERS="2", LOG_LEVEL="WARNING") as (_, url):
        passenger = SERVICE.examples[0].model_dump()
        # One keep-alive connection: one worker serves all ten predictions, while each scrape
        # opens a new connection that either worker may take.
        with httpx.Client() as client:
            while client.get(f"{url}/readyz").status_code != 200:
                time.sleep(0.1)
            for _ in range(10):
                response = client.post(f"{url}/predict_survival_by_passengers", json=[passenger])
                assert response.status_code == 200
        for _ in range(4):
            text = httpx.get(f"{url}/metrics").text
            rows = [line for line in text.splitlines() if line.startswith("model_predictions_total{")]
            assert len(rows) == 1 and float(rows[0].split()[-1]) == 10.0, text


def test_concurrent_requests_share_predict_calls() -> None:
    """Over a real server, requests in flight together are predicted in shared calls."""
    passenger = [SERVICE.examples[0].model_dump()]
    with running_server("titanic.main", LOG_LEVEL="WARNING") as (_, url):

        def post_ten(_: int) -> list[int]:
            with httpx.Client() as client:
                path = f"{url}/predict_survival_by_passengers"
                return [client.post(path, json=passenger).status_code for _ in range(10)]

        calls_before, rows_before = predict_calls(url, "titanic")
        with ThreadPoolExecutor(16) as pool:
            statuses = [status for ten in pool.map(post_ten, range(16)) for status in ten]
        calls_after, rows_after = predict_calls(url, "titanic")
    assert statuses == [200] * 160
    assert rows_after - rows_before == 160
    assert calls_after - calls_before < 160, "no request shared a predict call"


def test_access_lines_are_written_whatever_the_log_level() -> None:
    """prod logs at warning; its access lines, refusals included, are its audit trail."""
    token = "a-token-of-sixteen-chars"
    with running_server(
        "titanic.main", LOG_LEVEL="WARNING", ACCESS_LOG="true", AUTH_TOKEN=token, ENVIRONMENT="prod"
    ) as (process, url):
        refused = httpx.post(
            f"{url}/predict_survival_by_passengers", json=[], headers={"X-Request-ID": "no-token"}
        )
        allowed = httpx.post(
            f"{url}/predict_survival_by_passengers",
            json=[],
            headers={"X-Request-ID": "with-token", "Authorization": f"Bearer {token}"},
        )
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert (refused.status_code, allowed.status_code) == (401, 200)
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    statuses = {r["request_id"]: r["status"] for r in records if r.get("logger") == "modelserving.access"}
    assert statuses.get("no-token") == 401 and statuses.get("with-token") == 200, records
    assert not any(r["level"] == "info" and r.get("logger") != "modelserving.access" for r in records)


def test_access_lines_can_be_turned_off() -> None:
    with running_server("titanic.main", LOG_LEVEL="INFO", ACCESS_LOG="false") as (process, url):
        assert httpx.get(f"{url}/livez").status_code == 200
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert any(r["message"] == "model ready" for r in records)  # info lines still written
    assert not any(r.get("logger") == "modelserving.access" for r in records)
