"""The GitHub Actions workflow is valid and runs the CI scripts as the README says.

No GitHub is reachable here, so the workflow never runs in these tests: it is
validated offline against the GitHub workflow schema that check-jsonschema ships,
and its jobs are read to check that they call the scripts tests/ci exercises.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

WORKFLOW = Path(".github/workflows/ci.yaml")


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
    )


def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def run_steps(job: str) -> list[str]:
    return [step["run"] for step in workflow()["jobs"][job]["steps"] if "run" in step]


def test_workflow_is_valid_against_the_github_schema() -> None:
    result = validate(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validation_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "ci.yaml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "run-on:", 1))
    result = validate(broken)
    assert result.returncode != 0
    assert "run-on" in result.stdout + result.stderr


def test_pull_requests_build_only_what_changed_since_their_base_branch() -> None:
    job = workflow()["jobs"]["pull-request"]
    (checkout,) = (step for step in job["steps"] if step.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0, "the merge base must be in the clone"
    assert '.ci/changed "origin/$BASE_REF"' in run_steps("pull-request")
    assert '.ci/changed "$BEFORE" --publish' in run_steps("publish")


def test_every_action_is_pinned_by_commit() -> None:
    text = WORKFLOW.read_text()
    uses = re.findall(r"^\s*(?:- )?uses: (\S+)(.*)$", text, flags=re.MULTILINE)
    assert uses
    for action, comment in uses:
        name, _, ref = action.partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{action}: pin a commit, not a tag or branch"
        assert re.fullmatch(r" # v\d+\.\d+\.\d+", comment), f"{action}: say which release the commit is"


def test_code_from_pull_requests_never_runs_where_registry_credentials_are() -> None:
    jobs = workflow()["jobs"]
    credentialed = {name for name, job in jobs.items() if "secrets." in yaml.safe_dump(job)}
    assert credentialed == {"publish"}
    untrusted = {name for name, job in jobs.items() if "pull_request" in job.get("if", "")}
    assert untrusted == {"pull-request"}
    pools = {
        name: set(job["runs-on"]) - {"self-hosted", "linux", "x64", "debian-12"} for name, job in jobs.items()
    }
    assert pools["pull-request"] == {"pull-requests"}
    assert all(pools[name] == {"trusted"} for name in jobs if name != "pull-request"), pools
    assert (
        "pull_request_target" not in workflow()[True]
    ), "it would run fork code with this repository's secrets"
    publish = jobs["publish"]
    assert publish["if"] == "github.event_name == 'push'" and publish["environment"] == "registry"
    assert publish["env"]["DOCKER_CONFIG"].startswith("${{ runner.temp }}")
    for job in jobs.values():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@") and job is not jobs["repin"]:
                assert step["with"]["persist-credentials"] is False


def test_the_full_build_is_ci_run() -> None:
    assert run_steps("full") == [".ci/run"]
    assert workflow()["jobs"]["full"]["if"] == workflow()["jobs"]["clean-room"]["if"]
    assert run_steps("clean-room") == [".ci/clean-room"]
    # yaml reads the bare key `on` as True
    triggers = workflow()[True]
    assert {"pull_request", "push", "schedule", "workflow_dispatch"} <= set(triggers)


def test_the_weekly_job_re_pins_the_base_images_packages_and_proposes_them() -> None:
    job = workflow()["jobs"]["repin"]
    assert "schedule" in job["if"]
    assert run_steps("repin") == ["base-image/update-packages"]
    (propose,) = (
        step for step in job["steps"] if step.get("uses", "").startswith("peter-evans/create-pull-request@")
    )
    assert propose["with"]["add-paths"] == "base-image/packages.lock"


def test_ci_run_runs_the_readmes_two_commands_and_installs_nothing_of_its_own() -> None:
    lines = Path(".ci/run").read_text().splitlines()
    commands = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert ".ci/serve-smoke" in commands and "./pants test ::" in commands
    assert "setsid ./pants run services/titanic:serve" in Path(".ci/serve-smoke").read_text()
    for command in commands:
        for installer in ("apt-get", "apt ", "pip ", "dpkg", "provision", "curl", "wget", "start-docker"):
            assert installer not in command, command
