"""Run every service image under the Pod's constraints (issue #4).

Each image runs read-only, as 1001:1001, with every capability dropped, no new
privileges and a tmpfs /tmp; it must be ready within 5 s, predict, report its
image's revision, have no shell, finish a request in flight at SIGTERM, and
exit 0 within 10 s of it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from modelserving.testing import status_of_request_in_flight_at

POD_FLAGS = [
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--user",
    "1001:1001",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--network",
    "host",
]

PREDICTIONS = {
    "titanic": (
        "/predict_survival_by_passengers",
        [
            {
                "PassengerId": 893,
                "Pclass": 1,
                "Name": "Wilkes, Mrs. James",
                "Sex": "female",
                "SibSp": 1,
                "Parch": 0,
            }
        ],
    ),
    "iris": (
        "/v2/models/iris/infer",
        {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]},
    ),
    "diabetes": (
        "/v2/models/diabetes/infer",
        {
            "inputs": [
                {
                    "name": "features",
                    "shape": [1, 10],
                    "datatype": "FP64",
                    "data": [59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.86, 87],
                }
            ]
        },
    ),
}


def _docker() -> str:
    found = shutil.which("docker") or next(
        (p for p in ("/usr/local/bin/docker", "/usr/bin/docker") if Path(p).exists()), None
    )
    if not found:
        pytest.fail("no docker client: install Debian's docker.io and run .ci/start-docker", pytrace=False)
    if subprocess.run([found, "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers: run .ci/start-docker (as root)", pytrace=False)
    return found


def _image(name: str) -> str:
    info = json.loads(Path(f"services.{name}/image.docker-info.json").read_text())
    return str(info["image_id"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.parametrize("name", sorted(PREDICTIONS))
def test_image_runs_under_pod_constraints(name: str) -> None:
    docker = _docker()
    image = _image(name)
    inspect = json.loads(subprocess.check_output([docker, "image", "inspect", image]))[0]["Config"]
    assert inspect["User"] == "1001:1001"
    revision = inspect["Labels"]["org.opencontainers.image.revision"]

    shell = subprocess.run(
        [docker, "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image, "-c", "true"],
        capture_output=True,
    )
    assert shell.returncode != 0, "the image must have no /bin/sh"

    port = _free_port()
    started = time.monotonic()
    cid = subprocess.check_output(
        [docker, "run", "-d", *POD_FLAGS, "-e", f"PORT={port}", image], text=True
    ).strip()
    try:
        base = f"http://127.0.0.1:{port}"
        status = 0
        while time.monotonic() - started < 5:
            try:
                status, _ = _get(base + "/readyz")
            except (urllib.error.URLError, ConnectionError):
                status = 0
            if status == 200:
                break
            time.sleep(0.05)
        logs = subprocess.run([docker, "logs", cid], capture_output=True, text=True)
        assert status == 200, f"/readyz not 200 within 5 s\n{logs.stdout}{logs.stderr}"

        path, body = PREDICTIONS[name]
        req = urllib.request.Request(
            base + path, json.dumps(body).encode(), {"content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200
            assert json.loads(r.read())

        _, health = _get(base + "/health_check")
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
