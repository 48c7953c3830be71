"""The release runbook (docs/operations.md, "Releasing a model") works as written, as far as it
can without a cluster: every command in it is one of the kinds below, and each kind that needs
no cluster is run here.

- `k8s/release`: run as written, on a copy of the repo's k8s/ tree, with a digest and a commit
  for its variables; `kubectl kustomize`: renders the released overlay, which then names the
  image by that digest.
- `promtool query instant <prometheus> '<query>'`: the query, against synthetic series of the
  metrics it names, evaluated by promtool to the values a person would read at that step.
- `./pants ...`: CI runs these (`.ci/run`); here, each address names a directory of the repo.
- cluster, registry and git commands (`kubectl apply`, `kubectl argo rollouts`, `curl`,
  `docker push`, `git`): named, and not run.

A command of any other kind fails the test, so a new one is classified (and run) when it is
added. The synthetic figures: a candidate agreeing on 3 rows in 4, mirrored requests compared
at 1/s and dropped at 0.1/s, and a stable version serving half its predictions in each of two
bins, against a canary serving a quarter and three quarters.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Releasing a model"
DIGEST, COMMIT = "ab" * 32, "c0ffee" + "0" * 34
VARIABLES = {"$DIGEST": DIGEST, "$GIT_COMMIT": COMMIT, "$TOKEN": "a-token"}
NOT_RUN = (  # a cluster, a registry or the repo's history
    ("kubectl", "apply"),
    ("kubectl", "argo"),
    ("kubectl", "-n"),
    ("curl",),
    ("docker", "push"),
    ("git", "commit"),
    ("git", "revert"),
)
SYNTHETIC = 'namespace="modelserving-prod", app_kubernetes_io_name="titanic", model="titanic"'
VERSIONS = 'version="20261202", candidate_version="20261205"'
SERIES = [
    # The shadow: the candidate 20261205 agrees on 3 rows in 4; requests compared 60 a minute,
    # dropped 6 a minute.
    (f'model_shadow_rows_total{{{SYNTHETIC}, {VERSIONS}, agreed="true"}}', 180),
    (f'model_shadow_rows_total{{{SYNTHETIC}, {VERSIONS}, agreed="false"}}', 60),
    (f'model_shadow_requests_total{{{SYNTHETIC}, version="20261202", outcome="compared"}}', 60),
    (f'model_shadow_requests_total{{{SYNTHETIC}, version="20261202", outcome="dropped"}}', 6),
    # The outputs: stable serves half and half in two bins; the canary a quarter and three quarters.
    (f'model_outputs_total{{{SYNTHETIC}, version="20261202", bin="<0.5"}}', 100),
    (f'model_outputs_total{{{SYNTHETIC}, version="20261202", bin=">=0.5"}}', 100),
    (f'model_outputs_total{{{SYNTHETIC}, version="20261205", bin="<0.5"}}', 10),
    (f'model_outputs_total{{{SYNTHETIC}, version="20261205", bin=">=0.5"}}', 30),
]
# What each query of the runbook reads, by the metric it asks for.
READINGS = {
    "model_shadow_rows_total": [
        {"labels": '{version="20261202", candidate_version="20261205"}', "value": 0.75}
    ],
    "model_shadow_requests_total": [
        {"labels": '{outcome="compared"}', "value": 1.0},
        {"labels": '{outcome="dropped"}', "value": 0.1},
    ],
    "model_outputs_total": [
        {"labels": '{version="20261202", bin="<0.5"}', "value": 0.5},
        {"labels": '{version="20261202", bin=">=0.5"}', "value": 0.5},
        {"labels": '{version="20261205", bin="<0.5"}', "value": 0.25},
        {"labels": '{version="20261205", bin=">=0.5"}', "value": 0.75},
    ],
}


def runbook() -> str:
    text = (ROOT / "docs" / "operations.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end >= 0 else len(text)]


def expanded(word: str) -> str:
    for name, value in VARIABLES.items():
        word = word.replace(name, value)
    return word


def commands() -> list[list[str]]:
    """Every command of the runbook's bash blocks, as words (continuations joined, comments cut)."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", runbook(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                found.append([expanded(word) for word in words])
    return found


def of_kind(*start: str) -> list[list[str]]:
    return [words for words in commands() if tuple(words[: len(start)]) == start]


def test_every_command_is_of_a_known_kind() -> None:
    known = [
        ("k8s/release",),
        ("kubectl", "kustomize"),
        ("promtool", "query", "instant"),
        ("./pants",),
        *NOT_RUN,
    ]
    for words in commands():
        assert any(tuple(words[: len(kind)]) == kind for kind in known), f"unclassified: {shlex.join(words)}"
    assert (
        of_kind("k8s/release") and of_kind("kubectl", "kustomize") and of_kind("promtool", "query", "instant")
    )


def test_the_release_and_its_rendering_run_as_written(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "k8s", tmp_path / "k8s")
    for words in of_kind("k8s/release"):
        released = subprocess.run(words, cwd=tmp_path, capture_output=True, text=True)
        assert released.returncode == 0, released.stderr
    for words in of_kind("kubectl", "kustomize"):
        rendered = subprocess.run(
            [shutil.which("kubectl") or "/usr/bin/kubectl", *words[1:]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert rendered.returncode == 0, rendered.stderr
        (deployment,) = (
            obj for obj in yaml.safe_load_all(rendered.stdout) if obj and obj["kind"] == "Deployment"
        )
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"registry.example.com/modelserving-titanic@sha256:{DIGEST}"


def query_id(words: list[str]) -> str:
    return words[-1][:60]


@pytest.mark.parametrize("words", of_kind("promtool", "query", "instant"), ids=query_id)
def test_each_query_reads_what_the_step_says(words: list[str], tmp_path: Path) -> None:
    query = words[-1]
    (metric,) = {name for name in READINGS if name in query}
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": series, "values": f"0+{step}x30"} for series, step in SERIES],
                "promql_expr_test": [{"expr": query, "eval_time": "20m", "exp_samples": READINGS[metric]}],
            }
        ],
    }
    (tmp_path / "runbook.test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: ./pants test installs it (3rdparty/system/tools.txt)"
    ran = subprocess.run(
        [promtool, "test", "rules", "runbook.test.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_pants_addresses_name_directories() -> None:
    for words in of_kind("./pants"):
        for address in words[2:]:
            directory = address.split(":")[0]
            assert (ROOT / directory).is_dir(), f"{shlex.join(words)}: no directory {directory}"
