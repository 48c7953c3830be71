"""`./pants run tools/new-service` makes services that pass their tests, build, deploy and run.

In a throw-away copy of the repo: generate a classification and a regression
service, then, with no edits, lint/type-check/test them, render and validate their
overlays with the rest (tests/k8s), check them against every other service's
promises (tests/services), and run their images as their prod Deployments declare
(tests/containers). Also: a name that exists is refused and changes nothing.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from containers.engine import budget_megabytes, image_megabytes

from ci.throwaway import git, make_throwaway_repo, stop_pantsd
from modelserving.dev.testing import yield_the_cpu

yield_the_cpu()  # this module runs Pants and Docker builds for minutes

NEW = {"wine": "classification", "housing": "regression"}
ENVIRONMENTS = ("dev", "staging", "prod")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    copy = make_throwaway_repo(tmp_path_factory.mktemp("repo"))
    yield copy
    stop_pantsd(copy)


def pants(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = subprocess.run(["./pants", *args], cwd=repo, capture_output=True, text=True, timeout=1200)
    print(f"./pants {' '.join(args)}: exit {result.returncode} in {time.monotonic() - started:.0f} s")
    return result


def passed(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode == 0


@pytest.fixture(scope="module")
def generated(repo: Path) -> Path:
    for name, task in NEW.items():
        result = pants(repo, "run", "tools/new-service", "--", name, "--task", task)
        assert passed(result), result.stdout + result.stderr
        assert f"Created the {name} service ({task})" in result.stdout
    return repo


def test_generated_services_are_their_own_files_with_model_and_overlays(generated: Path) -> None:
    changed = git(generated, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert changed and all(line.startswith("?? ") for line in changed), changed  # nothing shared edited
    owners = {line[3:].split("/")[0] + "/" + line[3:].split("/")[1] for line in changed}
    assert owners == {f"{top}/{name}" for top in ("services", "k8s") for name in NEW}
    for name in NEW:
        assert (generated / f"services/{name}/model/model_card.json").is_file()
        for env in ("dev", "staging", "prod"):
            assert (generated / f"k8s/{name}/overlays/{env}/kustomization.yaml").is_file()


def plan(repo: Path, since: str) -> dict[str, Any]:
    """What changed-only CI (.ci/changed) would build and publish for the commits since `since`."""
    result = subprocess.run(
        [".ci/changed", since, "--list", "--json"], cwd=repo, capture_output=True, text=True, timeout=900
    )
    assert passed(result), result.stdout + result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_adding_services_builds_and_publishes_only_them(generated: Path) -> None:
    git(generated, "checkout", "-q", "-B", "added")
    git(generated, "add", "-A")
    git(generated, "commit", "-q", "-m", "two new services")
    added = plan(generated, "base")
    assert set(added["images"].values()) == {f"modelserving-{name}" for name in NEW}
    assert set(added["overlays"]) == {f"k8s/{name}/overlays/{env}" for name in NEW for env in ENVIRONMENTS}
    tests = {test.split(":")[0] for test in added["tests"]}
    assert {f"services/{name}/test_api.py" for name in NEW} <= tests
    assert "tests/services/test_every_service.py" in tests  # the cross-service tests run for them
    assert not any(test.startswith(("services/titanic/", "services/iris/")) for test in tests)

    git(generated, "checkout", "-q", "-b", "removed")
    git(generated, "rm", "-q", "-r", "services/housing", "k8s/housing")
    git(generated, "commit", "-q", "-m", "housing removed")
    removed = plan(generated, "added")
    assert removed["images"] == {} and removed["overlays"] == []
    assert not any(test.startswith(("services/", "k8s/")) for test in removed["tests"])
    git(generated, "checkout", "-q", "added")  # housing back, for the tests below
    assert (generated / "services/housing/BUILD").is_file()


def test_an_existing_name_is_refused_and_nothing_changes(generated: Path) -> None:
    before = git(generated, "status", "--porcelain")
    result = pants(generated, "run", "tools/new-service", "--", "wine", "--task", "regression")
    assert result.returncode != 0
    assert "new-service: 'wine' exists: services/wine" in result.stderr
    assert git(generated, "status", "--porcelain") == before


def test_generated_services_lint_type_check_and_pass_their_tests_and_the_shared_ones(generated: Path) -> None:
    specs = [f"services/{name}::" for name in NEW]
    result = pants(generated, "lint", "check", "test", *specs, "tests/k8s::", "tests/services::")
    assert passed(result), result.stdout + result.stderr[-6000:]
    for name in NEW:
        assert f"services/{name}/test_api.py:tests succeeded" in result.stderr


def test_generated_images_run_as_their_prod_deployments_declare(generated: Path) -> None:
    selected = " or ".join(NEW)
    result = pants(
        generated,
        "test",
        "--test-output=all",
        "tests/containers/test_pod_equivalent.py",
        "--",
        "-k",
        selected,
        "-v",
    )
    assert passed(result), result.stdout + result.stderr[-6000:]
    for name in NEW:
        assert (
            f"test_image_runs_as_the_prod_deployment_declares[{name}] PASSED" in result.stdout + result.stderr
        )


def test_generated_images_stay_within_their_size_budget(generated: Path) -> None:
    for name in NEW:  # packaged again (cached): the tag is then this checkout's, in an engine checkouts share
        pants(generated, "package", f"services/{name}:image")
        megabytes = image_megabytes(f"modelserving-{name}:latest")
        print(f"modelserving-{name}: {megabytes:.1f} MB (budget {budget_megabytes(name)} MB)")
        assert megabytes <= budget_megabytes(name), name
