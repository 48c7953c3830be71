"""The library's layers hold (import-linter's contracts in importlinter.ini), a forbidden import
breaks them with the linter's own report, and importing the package's root starts and
registers nothing."""

import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parent
CONTRACTS = PACKAGE / "importlinter.ini"


def serving_code(into: Path) -> Path:
    """A copy of the package without its tests (which may import from any layer)."""
    for source in PACKAGE.rglob("*.py"):
        if source.name.startswith("test_") or source.name == "conftest.py":
            continue
        target = into / "modelserving" / source.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return into


def lint_imports(code: Path) -> subprocess.CompletedProcess[str]:
    """import-linter's command (its console script) on `code`, against the contracts."""
    run = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", run, "--no-cache", "--no-logo", str(CONTRACTS)],
        env={"PYTHONPATH": str(code), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_layer_contract_is_kept(tmp_path: Path) -> None:
    result = lint_imports(serving_code(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 5 kept, 0 broken." in result.stdout


def lint_with_an_import(into: Path, module: str, statement: str) -> subprocess.CompletedProcess[str]:
    """import-linter on the serving code with `statement` added to `module` (a path in the package)."""
    code = serving_code(into)
    source = code / "modelserving" / module
    source.write_text(source.read_text() + f"\n{statement}  # noqa\n")
    return lint_imports(code)


def test_a_transport_imported_by_the_data_plane_breaks_the_layers(tmp_path: Path) -> None:
    result = lint_with_an_import(tmp_path, "runtime/batching.py", "from modelserving.rest import app as _app")
    assert result.returncode == 1
    assert "modelserving.runtime is not allowed to import modelserving.rest" in result.stdout
    assert "modelserving.runtime.batching -> modelserving.rest.app" in result.stdout
    assert "modelserving.runtime is not allowed to import fastapi" in result.stdout


def test_grpc_reaching_into_rests_http_plumbing_breaks_the_transports_contract(tmp_path: Path) -> None:
    result = lint_with_an_import(tmp_path, "grpc/servicer.py", "from modelserving.http import auth as _auth")
    assert result.returncode == 1
    assert "modelserving.grpc is not allowed to import modelserving.http" in result.stdout


def test_a_format_importing_a_training_library_breaks_the_models_as_data_contract(tmp_path: Path) -> None:
    result = lint_with_an_import(tmp_path, "formats/pipeline.py", "import sklearn.base as _base")
    assert result.returncode == 1
    assert "modelserving.formats.pipeline is not allowed to import sklearn" in result.stdout


def test_importing_the_root_builds_no_app_and_registers_no_metric() -> None:
    check = (
        "import sys, modelserving, modelserving.formats.trees, modelserving.formats.pipeline\n"
        "from prometheus_client import REGISTRY\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('modelserving.', 'fastapi', 'grpc')))\n"
        "print(loaded)\n"
        "print(sorted(family.name for family in REGISTRY.collect()))\n"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    modules, metrics = result.stdout.splitlines()
    assert not any(part in modules for part in ("rest", "grpc", "server", "http", "fastapi", "runtime"))
    # prometheus-client's default collectors (process, platform, gc) only: none of ours.
    assert not any(name in metrics for name in ("http_", "grpc_", "model_"))
