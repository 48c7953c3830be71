"""The Docker engine and the images Pants built, for tests that run containers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest


def docker_client() -> str:
    found = shutil.which("docker") or next(
        (p for p in ("/usr/local/bin/docker", "/usr/bin/docker") if Path(p).exists()), None
    )
    if not found:
        pytest.fail("no docker client: ./pants test installs it (3rdparty/system/tools.txt)", pytrace=False)
    if subprocess.run([found, "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers: ./pants test starts one (3rdparty/system/provision)", pytrace=False)
    return found


def built_image(name: str) -> str:
    info = json.loads(Path(f"services.{name}/image.docker-info.json").read_text())
    return str(info["image_id"])
