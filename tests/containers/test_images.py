"""Run every service image under the Pod's constraints (issue #4).

Each image runs read-only, as 1001:1001, with every capability dropped, no new
privileges and a tmpfs /tmp; it must become ready (the time it took is printed, a
figure, not a pass mark: the 5 s budget is checked by reading it), predict (over REST and
over gRPC, alike), report its
image's revision, have no shell, finish a request in flight at SIGTERM, and
exit 0 within 10 s of it.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from containers.engine import built_image, docker_client
from containers.harness import (
    POD_FLAGS,
    SERVICES,
    grpc_prediction,
    http_get,
    prediction_request,
    rest_prediction,
)

from modelserving.dev.testing import free_port, status_of_request_in_flight_at

READY_TIMEOUT_SECONDS = 60


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_image_runs_under_pod_constraints(name: str) -> None:
    docker = docker_client()
    image = built_image(name)
    inspect = json.loads(subprocess.check_output([docker, "image", "inspect", image]))[0]["Config"]
    assert inspect["User"] == "1001:1001"
    assert set(inspect["ExposedPorts"]) == {"8000/tcp", "8081/tcp"}  # REST (PORT) and gRPC (GRPC_PORT)
    assert {"PORT=8000", "GRPC_PORT=8081"} <= set(inspect["Env"])
    revision = inspect["Labels"]["org.opencontainers.image.revision"]

    shell = subprocess.run(
        [docker, "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image, "-c", "true"],
        capture_output=True,
    )
    assert shell.returncode != 0, "the image must have no /bin/sh"

    port, grpc_port = free_port(), free_port()
    started = time.monotonic()
    cid = subprocess.check_output(
        [docker, "run", "-d", *POD_FLAGS, "-e", f"PORT={port}", "-e", f"GRPC_PORT={grpc_port}"]
        + ["-e", "ALLOW_UNAUTHENTICATED=true", image],  # without it, and without tokens, it will not start
        text=True,
    ).strip()
    try:
        base = f"http://127.0.0.1:{port}"
        status = 0
        while time.monotonic() - started < READY_TIMEOUT_SECONDS:
            try:
                status, _ = http_get(base + "/readyz")
            except (urllib.error.URLError, ConnectionError):
                status = 0
            if status == 200:
                break
            time.sleep(0.05)
        logs = subprocess.run([docker, "logs", cid], capture_output=True, text=True)
        assert status == 200, f"/readyz not 200 within {READY_TIMEOUT_SECONDS} s\n{logs.stdout}{logs.stderr}"
        print(f"{name}: /readyz 200 {time.monotonic() - started:.2f} s after docker run")

        path, body = prediction_request(name)
        req = urllib.request.Request(
            base + path, json.dumps(body).encode(), {"content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200
            assert json.loads(r.read())

        assert grpc_prediction(name, f"127.0.0.1:{grpc_port}") == rest_prediction(name, base)

        _, health = http_get(base + "/health_check")
        assert json.loads(health)["app_revision"] == revision

        top = subprocess.check_output([docker, "top", cid, "-o", "pid,uid"], text=True).splitlines()[1:]
        uids = {line.split()[1] for line in top}
        assert uids == {"1001"}, top

        stopped = time.monotonic()
        in_flight = status_of_request_in_flight_at(
            lambda: subprocess.run(
                [docker, "kill", "--signal", "TERM", cid], check=True, capture_output=True
            ),
            base,
            path,
            json.dumps(body).encode(),
        )
        assert in_flight == 200, "a request in flight at SIGTERM must complete"
        code = subprocess.run(
            [docker, "wait", cid], capture_output=True, text=True, timeout=15
        ).stdout.strip()
        assert code == "0"
        assert time.monotonic() - stopped < 10
    finally:
        subprocess.run([docker, "rm", "-f", cid], capture_output=True)
