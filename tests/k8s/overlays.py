"""The repo's kustomize overlays as tests read them: which exist, each rendered by kubectl
(v1.32, which ./pants test installs), and `k8s/release` run on a tree.

Shared by tests/k8s, the gateway (tests/gateway) and the container and browser tests.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

K8S_ROOT = Path(__file__).resolve().parents[2] / "k8s"
# The registry (build-support/services.py), passed by each test target (model_services_env()).
SERVICES = tuple(os.environ.get("MODEL_SERVICES", "").split(","))
ENVIRONMENTS = ("dev", "staging", "prod")
OVERLAYS = [(service, env) for service in SERVICES for env in ENVIRONMENTS]

Obj = dict[str, Any]
Rendered = list[Obj]


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool not found: ./pants test installs it (3rdparty/system/tools.txt)", pytrace=False)
    return found


def kubectl() -> str:
    found = shutil.which("kubectl") or "/usr/bin/kubectl"
    if not os.access(found, os.X_OK):
        pytest.fail("kubectl not found (expected /usr/bin/kubectl, v1.32): cannot render overlays", False)
    return found


@functools.cache
def render(service: str, env: str, root: Path = K8S_ROOT) -> Rendered:
    """Every object `kubectl kustomize <root>/<service>/overlays/<env>` renders."""
    overlay = root / service / "overlays" / env
    result = subprocess.run(
        [kubectl(), "kustomize", str(overlay)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"{service}/{env}: kubectl kustomize failed: {result.stderr.strip()}", False)
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


def release(tree: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`k8s/release <arguments>` as run in the k8s/ directory `tree`."""
    return subprocess.run([str(tree / "release"), *arguments], capture_output=True, text=True, check=False)
