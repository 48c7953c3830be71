"""checkov's Kubernetes checks pass on every overlay as released (issue #17).

k8s/checkov installs the pinned checkov (3rdparty/checkov) on first use and runs it on the
rendered overlays. Here it runs on a copy of the tree where `k8s/release` has pinned every
overlay, as CI does on a release; and once with the one skip taken out, to show that the
checks run and that the skip is what lets the uid-1001 Deployment pass.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from k8s.overlays import K8S_ROOT, OVERLAYS, release
from modelserving.dev.testing import yield_the_cpu

yield_the_cpu()  # this module installs checkov and runs it for minutes

REPO_ROOT = K8S_ROOT.parent
SKIP_ANNOTATION = re.compile(r"^ *checkov\.io/skip\d+: (CKV\w+)=.+$", re.MULTILINE)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """A copy of k8s/ beside checkov's pins, as k8s/checkov finds them."""
    shutil.copytree(K8S_ROOT, tmp_path / "k8s")
    (tmp_path / "3rdparty" / "checkov").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "3rdparty" / "checkov" / "wheels.txt", tmp_path / "3rdparty" / "checkov")
    return tmp_path / "k8s"


def checkov(tree: Path, *overlays: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tree / "checkov"), *overlays], capture_output=True, text=True, check=False, timeout=900
    )


def counts(output: str) -> dict[str, int]:
    found = re.search(r"Passed checks: (\d+), Failed checks: (\d+), Skipped checks: (\d+)", output)
    assert found, f"no checkov summary in its output (stdout, then stderr):\n{output}"
    return dict(zip(("passed", "failed", "skipped"), map(int, found.groups()), strict=True))


def test_every_release_passes(tree: Path) -> None:
    for number, (service, env) in enumerate(OVERLAYS):
        digest = f"sha256:{number:064x}"
        commit = f"{number:040x}"
        done = release(tree, service, env, f"registry.example/modelserving-{service}@{digest}", commit)
        assert done.returncode == 0, done.stderr
    result = checkov(tree)
    summary = counts(result.stdout + result.stderr)
    assert result.returncode == 0 and summary["failed"] == 0, result.stdout + result.stderr
    assert summary["passed"] > 0
    # Only the reasoned skips, once per Deployment.
    skips = SKIP_ANNOTATION.findall((tree / "components" / "model-service" / "deployment.yaml").read_text())
    assert skips, "the Deployment's reasoned skip annotation is gone: update this test"
    assert summary["skipped"] == len(skips) * len(OVERLAYS), result.stdout


def test_a_check_without_its_reasoned_skip_fails(tree: Path) -> None:
    deployment = tree / "components" / "model-service" / "deployment.yaml"
    text = deployment.read_text()
    skipped = SKIP_ANNOTATION.findall(text)
    deployment.write_text(SKIP_ANNOTATION.sub("", text))
    result = checkov(tree, "titanic/overlays/prod")
    assert result.returncode != 0, result.stdout
    assert counts(result.stdout + result.stderr)["failed"] == len(skipped)
    for check in skipped:
        assert check in result.stdout
