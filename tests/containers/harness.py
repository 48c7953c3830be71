"""What the container tests share: the Docker client, the images Pants built, a request per service."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from modelserving.testing import registered_services

SERVICES = {service.name: service for service in registered_services()}


def prediction_request(name: str) -> tuple[str, list[dict[str, Any]]]:
    """The service's typed predict route and its documented examples as the body."""
    service = SERVICES[name]
    return service.predict_path, [example.model_dump(mode="json") for example in service.examples]


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
