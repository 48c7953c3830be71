"""The Docker engine and the images Pants built, for tests that run containers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest


def docker_client() -> str:
    found = shutil.which("docker") or next(
        (p for p in ("/usr/local/bin/docker", "/usr/bin/docker") if Path(p).exists()), None
    )
    if not found:
        pytest.fail("no docker client: ./pants test installs it (3rdparty/system/tools.txt)", pytrace=False)
    if subprocess.run([found, "info"], capture_output=True).returncode != 0:
        pytest.fail(
            "no Docker engine answers: ./pants test starts one (3rdparty/system/provision)", pytrace=False
        )
    return found


def docker_info(name: str) -> dict[str, Any]:
    """What Pants says it built for service `name`, or for `base` the base image."""
    info_file = (
        "base-image/base.docker-info.json" if name == "base" else f"services.{name}/image.docker-info.json"
    )
    info: dict[str, Any] = json.loads(Path(info_file).read_text())
    return info


def built_image(name: str) -> str:
    """The image's id (its tags may have moved on since: builds in other checkouts share the engine)."""
    return str(docker_info(name)["image_id"])


def built_names(name: str) -> set[str]:
    """The `repository:tag` names Pants gave the image."""
    return {tag["name"] for registry in docker_info(name)["registries"] for tag in registry["tags"]}


# Image size budgets in MB (issues #4, #26, #27); any other service's, a generated one's too: 180.
# Titanic's was 150 until #28 added OpenTelemetry's SDK, exporter and instrumentations and the
# CloudEvents SDK to every image (about 10.6 MB, of which pruning files serving never reads won 4).
IMAGE_BUDGET_MB = {"base": 80.0, "titanic": 158.0}
SERVICE_IMAGE_BUDGET_MB = 180.0


def image_megabytes(image: str) -> float:
    """An image's uncompressed size (id or `repository:tag`), as `docker image inspect` gives it."""
    inspect = [docker_client(), "image", "inspect", "--format", "{{.Size}}", image]
    return int(subprocess.check_output(inspect, text=True)) / 1e6


def budget_megabytes(name: str) -> float:
    return IMAGE_BUDGET_MB.get(name, SERVICE_IMAGE_BUDGET_MB)
