"""Each image carries only what serving imports (issue #15).

A probe runs in each service image, under the Pod's flags, with the image's own
venv Python: it starts the real service (`<name>.main:main`, uvicorn in the main
thread) and, from a thread, asks it for its health, a typed prediction of the
service's examples, its OpenAPI document, the documented v2 inference, metrics
and docs; once the server has stopped it reports what was imported, what the
venv holds and the service package's files. The image must hold no training
module (train.py and what only it imports, modelserving's training and testing
helpers), no training data, and no Python distribution that serving neither
imported nor needs (the non-optional Requires-Dist of what it imported, their
markers evaluated for the image's Python, and so on).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest
from containers.engine import built_image, docker_client, image_megabytes
from containers.harness import POD_FLAGS, SERVICES
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from modelserving.dev.testing import free_port

# Run by the image's venv Python: argv is the service's name and the port to serve on.
PROBE = r"""
import importlib, json, os, pathlib, platform, signal, sys, threading, time
import importlib.metadata as metadata
import urllib.error, urllib.request

name, port = sys.argv[1], int(sys.argv[2])
report = os.fdopen(os.dup(1), "w")  # stdout is the report's alone: the service logs to stderr
os.dup2(2, 1)
base = f"http://127.0.0.1:{port}"
statuses = {}


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data, {"content-type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            statuses[f"{method} {path}"] = response.status
            return response.read()
    except urllib.error.HTTPError as error:
        statuses[f"{method} {path}"] = error.code
        return error.read()


def exercise(service):
    try:
        deadline = time.monotonic() + 60
        while statuses.get("GET /readyz") != 200 and time.monotonic() < deadline:
            try:
                call("GET", "/readyz")
            except OSError:
                pass
            time.sleep(0.05)
        call("GET", "/health_check")
        call("POST", service.predict_path, [row.model_dump(mode="json") for row in service.examples])
        paths = json.loads(call("GET", "/openapi.json"))["paths"]
        infer = paths["/v2/models/{model_name}/infer"]["post"]["requestBody"]["content"]["application/json"]
        call("POST", f"/v2/models/{service.name}/infer", infer["example"])
        call("GET", "/metrics")
        call("GET", "/docs")
    except Exception as error:
        statuses["probe"] = repr(error)
    finally:
        os.kill(os.getpid(), signal.SIGTERM)  # the server drains and main() returns


module = importlib.import_module(f"{name}.main")
threading.Thread(target=exercise, args=(module.SERVICE,), daemon=True).start()
try:
    module.main()
except SystemExit as exit:
    statuses["exit"] = exit.code

site = next(pathlib.Path("/app/venv/lib").glob("python3*/site-packages"))
top_level = {module.partition(".")[0] for module in list(sys.modules)}
owners = metadata.packages_distributions()
report.write(json.dumps({
    "statuses": statuses,
    "imported": sorted({dist for module in top_level for dist in owners.get(module, ())}),
    "installed": {d.metadata["Name"]: d.requires or [] for d in metadata.distributions(path=[str(site)])},
    "files": sorted(
        str(path.relative_to(site))
        for package in (name, "modelserving")
        for path in (site / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ),
    "environment": {
        "implementation_name": sys.implementation.name,
        "implementation_version": platform.python_version(),
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_python_implementation": platform.python_implementation(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    },
}))
report.close()
"""


def needed_distributions(
    imported: Iterable[str], requires: Mapping[str, Sequence[str]], environment: Mapping[str, str]
) -> set[str]:
    """`imported` and, transitively, what each requires: Requires-Dist lines without an extra
    whose markers hold in `environment` (canonical names)."""
    requires = {canonicalize_name(name): lines for name, lines in requires.items()}
    needed: set[str] = set()
    pending = [canonicalize_name(name) for name in imported]
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        for line in requires.get(name, ()):
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or marker.evaluate({**environment, "extra": ""}):
                pending.append(canonicalize_name(requirement.name))
    return needed


def unneeded_distributions(report: Mapping[str, Any]) -> list[str]:
    """Distributions in the venv that serving neither imported nor needs."""
    needed = needed_distributions(report["imported"], report["installed"], report["environment"])
    return sorted(name for name in report["installed"] if canonicalize_name(name) not in needed)


def training_modules(name: str) -> set[str]:
    """The service's and modelserving's modules only training imports: those `<name>.train` imports
    and `<name>.main` does not, and modelserving's training and test helpers."""

    def imported_by(module: str) -> set[str]:
        script = (
            f"import sys, {module}; "
            f"print(*(m for m in sys.modules if m.partition('.')[0] in ({name!r}, 'modelserving')))"
        )
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        return set(run.stdout.split())

    only_training = imported_by(f"{name}.train") - imported_by(f"{name}.main")
    return only_training | {f"{name}.train", "modelserving.dev.training", "modelserving.dev.testing"}


def probe(name: str) -> dict[str, Any]:
    port = free_port()
    command = [docker_client(), "run", "--rm", *POD_FLAGS, "--entrypoint", "/app/venv/bin/python"]
    command += ["-e", "HOST=127.0.0.1", "-e", f"PORT={port}", "-e", "ALLOW_UNAUTHENTICATED=true"]
    command += [built_image(name), "-c", PROBE, name, str(port)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0 and run.stdout, run.stderr[-4000:]
    report: dict[str, Any] = json.loads(run.stdout)
    return report


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_image_holds_what_serving_imports_and_nothing_only_training_needs(name: str) -> None:
    report = probe(name)
    imported = report["imported"]
    megabytes = image_megabytes(built_image(name))
    print(f"\n{name}: image {megabytes:.1f} MB; serving imported {len(imported)} distributions:")
    print(f"  {' '.join(imported)}\n{name}: its packages' files:\n  {' '.join(report['files'])}")
    assert report["statuses"].pop("exit", None) in (None, 0), report["statuses"]
    assert set(report["statuses"].values()) == {200}, report["statuses"]

    files = set(report["files"])
    training = {module.replace(".", "/") + ".py" for module in training_modules(name)}
    assert not files & training, f"training modules in the image: {sorted(files & training)}"
    data = {path for path in files if path.startswith(f"{name}/data/") or path.endswith(".csv")}
    assert not data, f"training data in the image: {sorted(data)}"
    assert unneeded_distributions(report) == [], "distributions serving neither imports nor needs"


ENVIRONMENT = {"python_version": "3.11", "python_full_version": "3.11.2", "sys_platform": "linux"}
VENV = {
    "numpy": [],
    "fastapi": ["starlette>=0.40", "pydantic>=2.7", 'uvicorn>=0.12; extra == "standard"'],
    "starlette": ["anyio>=3.6", 'typing_extensions>=4.10; python_version < "3.10"'],
    "anyio": ["idna>=2.8"],
    "idna": [],
    "pydantic": [],
    "typing-extensions": [],
    "uvicorn": [],
    "scikit-learn": ["numpy>=1.22", "scipy>=1.8", "joblib>=1.2", 'pytest>=7; extra == "tests"'],
    "scipy": ["numpy>=1.23"],
    "joblib": [],
}


def test_a_distribution_serving_neither_imports_nor_needs_is_reported() -> None:
    report: dict[str, Any] = {"imported": ["numpy", "FastAPI"], "installed": VENV, "environment": ENVIRONMENT}
    # An extra's requirement (uvicorn) or one for another Python (typing-extensions) does not count.
    unneeded = ["joblib", "scikit-learn", "scipy", "typing-extensions", "uvicorn"]
    assert unneeded_distributions(report) == unneeded
    imported_sklearn = {**report, "imported": ["numpy", "fastapi", "scikit_learn"]}
    assert unneeded_distributions(imported_sklearn) == ["typing-extensions", "uvicorn"]
