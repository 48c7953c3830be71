"""The generator refuses bad names, renders every template fully, and leaves nothing behind on failure.

(test_new_service.py generates real services into a copy of the repo and builds them.)
"""

from pathlib import Path

import new_service
import pytest
from new_service import Refused, create, render


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The parts of the monorepo the generator reads and writes."""
    (tmp_path / "pants.toml").write_text("[GLOBAL]\n")
    (tmp_path / "build-support").mkdir()
    (tmp_path / "build-support/macros.py").write_text("def model_service(name): ...\n")
    (tmp_path / "3rdparty/python").mkdir(parents=True)
    (tmp_path / "3rdparty/python/requirements.txt").write_text(
        "fastapi>=0.115\n# a comment\nxgboost-cpu>=3.0\n"
    )
    for package in ("services/iris", "libs/modelserving", "tests/containers", "tools/ci"):
        (tmp_path / package).mkdir(parents=True)
    (tmp_path / "tools/ci/changed.py").write_text("")
    (tmp_path / "k8s/components").mkdir(parents=True)
    return tmp_path


def tree(repo: Path) -> dict[str, str]:
    """Every file under `repo`, by path, with its content."""
    return {str(path.relative_to(repo)): path.read_text() for path in repo.rglob("*") if path.is_file()}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("iris", "exists: services/iris"),
        ("components", "exists: k8s/components"),
        ("modelserving", "shadow the repo's package libs/modelserving"),
        ("containers", "shadow the repo's package tests/containers"),
        ("changed", "shadow the repo's package tools/ci/changed.py"),
        ("json", "standard library"),
        ("fastapi", "installed module"),
        ("xgboost_cpu", "not a valid service name"),
        ("my-model", "not a valid service name"),
        ("Wine", "not a valid service name"),
        ("9lives", "not a valid service name"),
        ("w", "not a valid service name"),
        ("a" * 31, "not a valid service name"),
        ("class", "Python keyword"),
        ("match", "Python keyword"),
    ],
)
def test_refuses_a_name_that_is_taken_or_invalid_and_writes_nothing(
    repo: Path, name: str, reason: str
) -> None:
    before = tree(repo)
    with pytest.raises(Refused, match=reason):
        create(repo, name, "classification", with_model=False)
    assert tree(repo) == before
    assert not (repo / "services" / name).exists() or name == "iris"


@pytest.mark.parametrize("task", sorted(new_service.TASKS))
def test_every_template_is_rendered_fully(task: str) -> None:
    files = render("wine", task)
    assert {str(path) for path in files} >= {
        "services/wine/BUILD",
        "services/wine/README.md",
        "services/wine/schemas.py",
        "services/wine/features.py",
        "services/wine/main.py",
        "services/wine/train.py",
        "services/wine/test_api.py",
        "services/wine/test_model_quality.py",
        "k8s/wine/base/kustomization.yaml",
        *(f"k8s/wine/overlays/{env}/kustomization.yaml" for env in ("dev", "staging", "prod")),
    }
    for path, content in files.items():
        leftovers = {word for word in content.split() if "$" in word} - {"$GIT_COMMIT"}
        assert not leftovers, f"{path}: unrendered {leftovers}"
    assert 'model_service(name="wine"' in files[Path("services/wine/BUILD")]
    assert "newName: modelserving-wine" in files[Path("k8s/wine/base/kustomization.yaml")]


def test_writes_only_the_services_own_directories(repo: Path) -> None:
    before = tree(repo)
    create(repo, "wine", "regression", with_model=False)
    added = {path: content for path, content in tree(repo).items() if path not in before}
    assert {path for path, content in tree(repo).items() if before.get(path, content) != content} == set()
    assert added and all(path.startswith(("services/wine/", "k8s/wine/")) for path in added)
    assert "services/wine/main.py" in added
    assert "k8s/wine/overlays/prod/kustomization.yaml" in added


def test_a_failed_step_leaves_nothing_behind(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_training(repo: Path, name: str) -> None:
        raise RuntimeError("training failed")

    monkeypatch.setattr(new_service, "train", failing_training)
    before = tree(repo)
    with pytest.raises(RuntimeError, match="training failed"):
        create(repo, "wine", "classification")
    assert not (repo / "services/wine").exists()
    assert not (repo / "k8s/wine").exists()
    assert tree(repo) == before
