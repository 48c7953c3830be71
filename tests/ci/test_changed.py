"""The changed-only CI (.ci/changed) plans exactly what each kind of change touches.

Each case commits one change to a throw-away copy of the repo and compares the
script's plan (`.ci/changed base --list --json`) with the expected tests, images and
overlays. Expectations come from the repo's layout (which test files exist, which
services are registered), never from Pants or the script.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ci.throwaway import git, make_throwaway_repo, stop_pantsd
from modelserving.dev.testing import yield_the_cpu

yield_the_cpu()  # this module runs Pants for minutes

ENVIRONMENTS = ("dev", "staging", "prod")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    copy = make_throwaway_repo(tmp_path_factory.mktemp("repo"))
    yield copy
    stop_pantsd(copy)


def registered_services(repo: Path) -> list[str]:
    """The services whose BUILD declares one (`model_service(...)`), as the launcher finds them."""
    return sorted(
        build.parent.name
        for build in repo.glob("services/*/BUILD")
        if re.search(r"^model_service\(", build.read_text(), flags=re.MULTILINE)
    )


def files_matching(repo: Path, *globs: str) -> set[str]:
    return {str(path.relative_to(repo)) for pattern in globs for path in repo.glob(pattern)}


def library_tests_over_rest(repo: Path) -> set[str]:
    """The library's tests that import the REST transport (directly, or through the app that
    `server/app.py` composes or the test helpers), and the layers' test, which reads every
    layer. The layers below REST (runtime, protocol, formats) and their tests are untouched
    by a change to it."""
    uses_rest = re.compile(r"^from modelserving\.(rest|server\.app|dev\.testing)\b", re.MULTILINE)
    return {
        test
        for test in files_matching(repo, "libs/**/test_*.py")
        if uses_rest.search((repo / test).read_text()) or test.endswith("/test_layers.py")
    }


@dataclass
class Expected:
    tests: Callable[[Path], set[str]]
    images: Callable[[list[str]], set[str]]
    overlays: Callable[[list[str]], set[str]]


def nothing(_: object) -> set[str]:
    return set()


def service_images(services: list[str]) -> set[str]:
    return {f"modelserving-{service}" for service in services}


def every_overlay(services: list[str]) -> set[str]:
    return {f"k8s/{service}/overlays/{env}" for service in services for env in ENVIRONMENTS}


CI_TESTS = "tests/ci/test_*.py"  # they copy the whole build (//:tree), so any build change reruns them
DOCS_TESTS = "tests/docs/test_*.py"  # every path the docs name, checked against the whole tree
CROSS_SERVICE_TESTS = (
    "tests/services/test_*.py",
    "tests/clients/test_*.py",  # real protocol clients against every service
    "tests/containers/test_*.py",
    "tests/k8s/test_*.py",
    "tests/reliability/test_fuzz.py",  # every service's OpenAPI schema, fuzzed
)


def training_library_tests(repo: Path) -> set[str]:
    """What a pin of XGBoost reruns: diabetes' tests, the exporter's, and the shared suites but the
    overlays' (no image changes)."""
    return files_matching(
        repo,
        "services/diabetes/test_*.py",
        "libs/modelserving/dev/test_export.py",
        *(tests for tests in CROSS_SERVICE_TESTS if tests != "tests/k8s/test_*.py"),
        CI_TESTS,
        DOCS_TESTS,
    )


DEPLOYMENT_TESTS = ("tests/containers/test_*.py", "tests/k8s/test_*.py")
BROWSER_TESTS = "tests/browser/test_*.py"  # through the gateway titanic's staging overlay declares


def append(path: str, line: str = "# touched by a CI test") -> Callable[[Path], None]:
    def change(repo: Path) -> None:
        with (repo / path).open("a") as file:
            file.write(f"\n{line}\n")

    return change


def bump_pin(name: str) -> Callable[[Path], None]:
    """A new version of `name` in constraints.txt (the wheel list is left alone: ./pants checks it)."""

    def change(repo: Path) -> None:
        constraints = repo / "3rdparty/python/constraints.txt"
        text, count = re.subn(
            rf"^({re.escape(name)}==)\S+", r"\g<1>99.0", constraints.read_text(), flags=re.M
        )
        assert count == 1, f"no pin for {name}"
        constraints.write_text(text)

    return change


def rehash_wheel(name: str) -> Callable[[Path], None]:
    """A second sha256 accepted for the wheel of `name` in wheels.txt (still valid for pip)."""

    def change(repo: Path) -> None:
        wheels = repo / "3rdparty/python/wheels.txt"
        text, count = re.subn(
            rf"^({re.escape(name)}==\S+ --hash=sha256:\w+)",
            rf"\1 --hash=sha256:{'0' * 64}",
            wheels.read_text(),
            flags=re.M,
        )
        assert count == 1, f"no wheel for {name}"
        wheels.write_text(text)

    return change


def several(*changes: Callable[[Path], None]) -> Callable[[Path], None]:
    def change(repo: Path) -> None:
        for one in changes:
            one(repo)

    return change


CASES: dict[str, tuple[Callable[[Path], None], Expected]] = {
    "one-service": (
        append("services/iris/schemas.py"),
        Expected(
            lambda repo: files_matching(
                repo, "services/iris/test_*.py", *CROSS_SERVICE_TESTS, CI_TESTS, DOCS_TESTS
            ),
            lambda _: {"modelserving-iris"},
            lambda _: every_overlay(["iris"]),
        ),
    ),
    "training-only": (
        append("services/iris/features.py"),  # not in the image, which holds what serving imports
        Expected(
            lambda repo: files_matching(
                repo,
                "services/iris/test_*.py",
                # Not the overlays' tests: no image changed.
                *(tests for tests in CROSS_SERVICE_TESTS if tests != "tests/k8s/test_*.py"),
                CI_TESTS,
                DOCS_TESTS,
            ),
            nothing,
            nothing,
        ),
    ),
    "libs": (
        append("libs/modelserving/rest/v2.py"),
        Expected(
            lambda repo: library_tests_over_rest(repo)
            | files_matching(
                repo,
                "services/*/test_*.py",
                "tests/browser/test_*.py",
                "tests/bench/test_harness.py",  # the benchmark's smoke test runs the Titanic PEX
                "tests/reliability/test_*.py",  # real Titanic servers and its PEX
                *CROSS_SERVICE_TESTS,
                CI_TESTS,
                DOCS_TESTS,
            ),
            service_images,
            every_overlay,
        ),
    ),
    "base-image": (
        append("base-image/Dockerfile"),
        Expected(
            lambda repo: files_matching(
                repo,
                *DEPLOYMENT_TESTS,
                BROWSER_TESTS,
                "tests/reliability/test_shutdown.py",
                CI_TESTS,  # runs Titanic's image
                DOCS_TESTS,
            ),
            lambda services: service_images(services) | {"modelserving-base"},
            every_overlay,
        ),
    ),
    # XGBoost trains diabetes; no image holds it (models are served as arrays): its tests and the
    # exporter's rerun, nothing is built or published.
    "pin-of-a-training-library": (
        several(bump_pin("xgboost-cpu"), rehash_wheel("xgboost_cpu")),
        Expected(lambda repo: training_library_tests(repo), nothing, nothing),
    ),
    "wheel-of-a-training-library": (
        rehash_wheel("xgboost_cpu"),  # every image's SBOM reads wheels.txt, and none has this wheel
        Expected(lambda repo: training_library_tests(repo), nothing, nothing),
    ),
    "pin-of-a-test-tool": (
        # Needed by Playwright and tritonclient (gevent) only: the browser and client tests, and the
        # container tests, which call each image's gRPC API with tritonclient.
        bump_pin("greenlet"),
        Expected(
            lambda repo: files_matching(
                repo,
                "tests/browser/test_*.py",
                "tests/clients/test_*.py",
                "tests/containers/test_*.py",
                CI_TESTS,
                DOCS_TESTS,
            ),
            nothing,
            nothing,
        ),
    ),
    "pants-toml": (
        append("pants.toml"),
        Expected(
            lambda repo: files_matching(repo, "**/test_*.py"),
            lambda services: service_images(services) | {"modelserving-base"},
            every_overlay,
        ),
    ),
    "one-overlay": (
        append("k8s/iris/overlays/prod/kustomization.yaml"),
        Expected(
            lambda repo: files_matching(repo, *DEPLOYMENT_TESTS, CI_TESTS, DOCS_TESTS),
            nothing,
            lambda _: {"k8s/iris/overlays/prod"},
        ),
    ),
    "shared-component": (
        append("k8s/components/model-service/deployment.yaml"),
        Expected(
            lambda repo: files_matching(repo, *DEPLOYMENT_TESTS, BROWSER_TESTS, CI_TESTS, DOCS_TESTS),
            nothing,
            every_overlay,
        ),
    ),
    "docs-only": (
        several(append("README.md", "More docs."), append("services/iris/README.md", "More docs.")),
        Expected(lambda repo: files_matching(repo, DOCS_TESTS), nothing, nothing),
    ),
}


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def changed(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [".ci/changed", "base", *args], cwd=repo, capture_output=True, text=True, timeout=900
    )


@pytest.mark.parametrize("case", CASES)
def test_plan_is_exactly_what_the_change_touches(repo: Path, case: str) -> None:
    change, expected = CASES[case]
    git(repo, "checkout", "-q", "-B", case, "base")
    change(repo)
    commit_all(repo, case)

    result = changed(repo, "--list", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads(result.stdout)
    services = registered_services(repo)
    assert services, "no services/<name>/BUILD declares a model_service"

    images = sorted(plan["images"].values())
    print(f"{case}: {len(plan['targets'])} targets, {len(plan['tests'])} tests, images {images}")
    assert {test.split(":")[0] for test in plan["tests"]} == expected.tests(repo)
    assert set(plan["images"].values()) == expected.images(services)
    assert set(plan["overlays"]) == expected.overlays(services)


def documented_example() -> tuple[str, list[str]]:
    """docs/ci.md's example: the file it edits, and the lines `.ci/changed` printed."""
    text = Path("docs/ci.md").read_text()
    found = re.search(r"```console\n\$ \.ci/changed \S+ --list +# after editing (\S+)\n(.*?)```", text, re.S)
    assert found, "docs/ci.md has no `.ci/changed ... --list` example"
    return found.group(1), found.group(2).splitlines()


def test_the_documented_example_is_what_the_command_prints(repo: Path) -> None:
    edited, documented = documented_example()
    git(repo, "checkout", "-q", "-B", "documented-example", "base")
    append(edited, "# More.")(repo)
    commit_all(repo, "the documented example")
    result = changed(repo, "--list")
    assert result.returncode == 0, result.stdout + result.stderr
    printed = result.stdout.splitlines()
    assert re.fullmatch(r"Changed since [0-9a-f]{12}: 1 file\(s\)", printed[0]), printed[0]
    assert re.fullmatch(r"Changed since [0-9a-f]{12}: 1 file\(s\)", documented[0]), documented[0]
    assert printed[1:] == documented[1:], (
        "docs/ci.md's example is not what .ci/changed prints:\n" + result.stdout
    )
