"""What the container tests share: the Docker client, the images Pants built, a request per service."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

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


def docker_client() -> str:
    found = shutil.which("docker") or next(
        (p for p in ("/usr/local/bin/docker", "/usr/bin/docker") if Path(p).exists()), None
    )
    if not found:
        pytest.fail("no docker client: install Debian's docker.io and run .ci/start-docker", pytrace=False)
    if subprocess.run([found, "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers: run .ci/start-docker (as root)", pytrace=False)
    return found


def built_image(name: str) -> str:
    info = json.loads(Path(f"services.{name}/image.docker-info.json").read_text())
    return str(info["image_id"])


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
