"""Shutdown under load: SIGTERM while 16 clients are sending, on the packaged PEX (over REST and
gRPC at once) and on the image.

The contract (uvicorn's own, supported shutdown): on SIGTERM the listener closes;
every request the server accepted completes with a 2xx, including requests whose
bodies were still arriving when the listener closed; the process exits 0 within
`GRACEFUL_SHUTDOWN_SECONDS`. The time to keep serving while load balancers forget
the pod is the orchestrator's, before SIGTERM: Kubernetes' preStop sleep (k8s/).

A request counts as accepted when the server logged it (the access log, one JSON
line with the request id) or when its headers had been read before SIGTERM (the
half-sent requests below). Clients may see connections refused or closed only after
SIGTERM, and never a response other than 2xx. gRPC drains at the same time: its health
service says NOT_SERVING at once, it takes no new call (only after SIGTERM, calls fail as
not taken on), and every call it logged ends OK.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc  # type: ignore[import]
import httpx
from benchmark import GRPC_PASSENGER, MODEL_INFER, PASSENGER
from containers.engine import built_image, docker_client

from modelserving.dev.testing import free_port, grpc_health

PATH = "/predict_survival_by_passengers"
BODY = json.dumps([PASSENGER] * 20).encode()
CLIENTS = 16
GRACE_SECONDS = 10.0
UNREAD_SECONDS = 0.5  # how long before SIGTERM a request may still be unread
HALF_SENT = 8  # requests whose headers and half a body are sent just before SIGTERM


@dataclass
class Attempt:
    request_id: str
    sent_at: float
    status: int | None = None
    error: str | None = None


@dataclass
class Run:
    """What the clients saw, with times on the test's monotonic clock."""

    attempts: list[Attempt] = field(default_factory=list)
    calls: list[Attempt] = field(default_factory=list)  # gRPC calls; `error`: their status if not OK
    not_serving_after: float | None = None  # seconds from SIGTERM until gRPC health said NOT_SERVING
    half_sent: dict[str, int] = field(default_factory=dict)
    listener_closed_at: float = 0.0
    sigterm_at: float = 0.0
    exited_at: float = 0.0
    exit_code: int | None = None


def keep_sending(url: str, name: str, stop: threading.Event, attempts: list[Attempt]) -> None:
    with httpx.Client(timeout=30) as client:
        for number in range(1_000_000):
            if stop.is_set():
                return
            attempt = Attempt(f"{name}-{number}", time.monotonic())
            attempts.append(attempt)
            try:
                response = client.post(
                    url + PATH,
                    content=BODY,
                    headers={"content-type": "application/json", "x-request-id": attempt.request_id},
                )
                attempt.status = response.status_code
            except httpx.TransportError as error:
                attempt.error = type(error).__name__
                time.sleep(0.02)  # refused once the listener is closed: do not spin


def keep_calling(target: str, name: str, stop: threading.Event, calls: list[Attempt]) -> None:
    """ModelInfer calls one after another, each with its own request id, until `stop`."""
    with grpc.insecure_channel(target) as channel:
        infer = channel.unary_unary(MODEL_INFER, request_serializer=None, response_deserializer=None)
        for number in range(1_000_000):
            if stop.is_set():
                return
            call = Attempt(f"{name}-{number}", time.monotonic())
            calls.append(call)
            try:
                infer(GRPC_PASSENGER, timeout=30, metadata=(("x-request-id", call.request_id),))
                call.status = 200
            except grpc.RpcError as error:
                call.error = error.code().name
                time.sleep(0.02)


def half_sent(url: str, request_id: str) -> socket.socket:
    """A connection that has sent a request's headers and half its body."""
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=30)
    connection.sendall(
        f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\nX-Request-ID: {request_id}\r\nConnection: close\r\n\r\n".encode()
        + BODY[: len(BODY) // 2]
    )
    return connection


def finish(connection: socket.socket) -> int:
    with connection:
        connection.sendall(BODY[len(BODY) // 2 :])
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    status_line = response.split(b"\r\n", 1)[0].split()
    return int(status_line[1]) if len(status_line) > 1 else 0


def readyz(url: str) -> int:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code
    except httpx.TransportError:
        return 0  # refused: the listener is closed


def health_status(target: str) -> str:
    try:
        return grpc_health(target)
    except grpc.RpcError as error:
        return str(error.code().name)  # UNAVAILABLE: no longer listening


def shut_down_under_load(
    url: str, sigterm: Callable[[], object], wait_exit: Callable[[], int], grpc_target: str | None = None
) -> Run:
    run = Run()
    stop = threading.Event()
    clients = [
        threading.Thread(target=keep_sending, args=(url, f"client{n}", stop, run.attempts), daemon=True)
        for n in range(CLIENTS)
    ]
    if grpc_target:
        clients += [
            threading.Thread(target=keep_calling, args=(grpc_target, f"rpc{n}", stop, run.calls), daemon=True)
            for n in range(CLIENTS // 2)
        ]
    for client in clients:
        client.start()
    try:
        loaded_by = time.monotonic() + 30
        while not any(attempt.status == 200 for attempt in run.attempts):
            assert time.monotonic() < loaded_by, "no request answered before SIGTERM"
            time.sleep(0.1)
        time.sleep(1.0)

        connections = {f"half-sent-{n}": half_sent(url, f"half-sent-{n}") for n in range(HALF_SENT)}
        time.sleep(0.3)  # their headers are read: they are accepted
        run.sigterm_at = time.monotonic()
        sigterm()
        if grpc_target:
            while health_status(grpc_target) == "SERVING":
                time.sleep(0.01)
            run.not_serving_after = time.monotonic() - run.sigterm_at
        while readyz(url) != 0:  # wait for the listener to close, then send the rest of each body
            time.sleep(0.02)
        run.listener_closed_at = time.monotonic()
        run.half_sent = {request_id: finish(connection) for request_id, connection in connections.items()}

        run.exit_code = wait_exit()
        run.exited_at = time.monotonic()
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=35)
    return run


def accepted_ids(log_lines: list[str]) -> set[str]:
    records = [json.loads(line) for line in log_lines if line.startswith("{")]
    return {r["request_id"] for r in records if r.get("path") == PATH and "status" in r}


def accepted_calls(log_lines: list[str]) -> dict[str, str]:
    """Each ModelInfer call the server logged: its status."""
    records = [json.loads(line) for line in log_lines if line.startswith("{")]
    return {r["request_id"]: r["status"] for r in records if r.get("method", "").endswith("/ModelInfer")}


def assert_graceful(run: Run, log_lines: list[str], record: Callable[[str, object], None]) -> None:
    answered = [a for a in run.attempts if a.status is not None]
    failed = [a for a in run.attempts if a.error is not None]
    figures = {
        "requests_answered": len(answered),
        "answered_after_sigterm": len([a for a in answered if a.sent_at > run.sigterm_at]),
        "refused_or_closed_after_sigterm": len(failed),
        "half_sent_at_close": len(run.half_sent),
        "listener_closed_after_ms": round((run.listener_closed_at - run.sigterm_at) * 1000, 1),
        "exit_code": run.exit_code,
        "exit_after_sigterm_s": round(run.exited_at - run.sigterm_at, 2),
    }
    print("shutdown:", json.dumps(figures))
    for name, value in figures.items():
        record(name, value)

    assert all(a.status == 200 for a in answered), [
        (a.request_id, a.status) for a in answered if a.status != 200
    ]
    assert list(run.half_sent.values()) == [200] * HALF_SENT, run.half_sent
    got_200 = {a.request_id for a in answered} | set(run.half_sent)
    lost = accepted_ids(log_lines) - got_200
    assert not lost, f"accepted but not answered: {sorted(lost)[:10]}"
    # A request sent just before SIGTERM may still sit unread in its kept-alive connection when
    # the server closes that connection: not accepted, so the client sees it closed.
    early = [a for a in failed if a.sent_at < run.sigterm_at - UNREAD_SECONDS]
    assert not early, f"failed before SIGTERM: {[(a.request_id, a.error) for a in early]}"
    assert run.exit_code == 0
    assert run.exited_at - run.sigterm_at <= GRACE_SECONDS
    if run.calls:
        assert_grpc_graceful(run, log_lines, record)


def assert_grpc_graceful(run: Run, log_lines: list[str], record: Callable[[str, object], None]) -> None:
    ok = [call for call in run.calls if call.status == 200]
    failed = [call for call in run.calls if call.error is not None]
    record("grpc_calls_ok", len(ok))
    record("grpc_refused_after_sigterm", len(failed))
    assert run.not_serving_after is not None
    record("grpc_not_serving_after_ms", round(run.not_serving_after * 1000, 1))
    assert (
        run.not_serving_after < 1.0
    ), f"gRPC health said SERVING {run.not_serving_after:.2f} s after SIGTERM"
    assert len(ok) > 0
    # Refused only once draining began, as calls never taken on: UNAVAILABLE once the server has
    # stopped listening, CANCELLED by gRPC's core for a call that met the server's GOAWAY on the way.
    early = [call for call in failed if call.sent_at < run.sigterm_at - UNREAD_SECONDS]
    assert not early, f"gRPC calls failed before SIGTERM: {[(c.request_id, c.error) for c in early]}"
    assert {call.error for call in failed} <= {"UNAVAILABLE", "CANCELLED"}, {call.error for call in failed}
    logged = accepted_calls(log_lines)
    assert logged and set(logged.values()) == {"OK"}, {code for code in logged.values() if code != "OK"}
    lost = set(logged) - {call.request_id for call in ok}
    assert not lost, f"gRPC calls the server answered OK that no client got: {sorted(lost)[:10]}"


ENV = {
    "LOG_LEVEL": "info",
    "GRACEFUL_SHUTDOWN_SECONDS": str(GRACE_SECONDS),
    # The half-sent requests hold their bodies back across SIGTERM on purpose, longer than a
    # request may wait by default (an admitted request's body must arrive before its deadline).
    "MAX_QUEUE_SECONDS": str(GRACE_SECONDS),
}


def wait_ready(url: str, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120
    while readyz(url) != 200:
        assert alive() and time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.1)


def test_packaged_app_with_two_workers_drains_rest_and_grpc_together_under_load(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    port, grpc_port = free_port(), free_port()
    log = tmp_path / "server.log"
    pex = Path.cwd() / "services.titanic" / "serve.pex"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, str(pex)],
            env={**os.environ, **ENV, "PORT": str(port), "GRPC_PORT": str(grpc_port), "WORKERS": "2"},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, lambda: process.poll() is None)
            run = shut_down_under_load(
                url,
                lambda: process.send_signal(signal.SIGTERM),
                lambda: process.wait(timeout=GRACE_SECONDS + 10),
                grpc_target=f"127.0.0.1:{grpc_port}",
            )
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert_graceful(run, log.read_text().splitlines(), record_property)


@contextmanager
def container(docker: str, image: str, port: int) -> Iterator[str]:
    env = {**ENV, "PORT": str(port), "ALLOW_UNAUTHENTICATED": "true"}
    cid = subprocess.check_output(
        [docker, "run", "-d", "--network", "host", "--read-only", "--cap-drop", "ALL"]
        + ["--security-opt", "no-new-privileges"]
        + [flag for name, value in env.items() for flag in ("-e", f"{name}={value}")]
        + [image],
        text=True,
    ).strip()
    try:
        yield cid
    finally:
        subprocess.run([docker, "rm", "-f", cid], capture_output=True)


def test_container_drains_under_load(record_property: Callable[[str, object], None]) -> None:
    docker = docker_client()
    port = free_port()
    with container(docker, built_image("titanic"), port) as cid:

        def running() -> bool:
            inspect = subprocess.check_output([docker, "inspect", "-f", "{{.State.Running}}", cid], text=True)
            return inspect.strip() == "true"

        url = f"http://127.0.0.1:{port}"
        wait_ready(url, running)
        run = shut_down_under_load(
            url,
            lambda: subprocess.run(
                [docker, "kill", "--signal", "TERM", cid], check=True, capture_output=True
            ),
            lambda: int(subprocess.check_output([docker, "wait", cid], text=True)),
        )
        logs = subprocess.run([docker, "logs", cid], capture_output=True, text=True)
    assert_graceful(run, (logs.stdout + logs.stderr).splitlines(), record_property)
