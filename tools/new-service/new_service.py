"""Create a model service, ready to test, build and deploy, in one command.

    ./pants run tools/new-service -- <name> --task classification|regression

writes services/<name>/ (schemas, features, model, training, tests, README, BUILD)
and k8s/<name>/ (base and dev/staging/prod overlays on the shared component) from
the templates next to this file, and trains its first model on a data set bundled with
scikit-learn. It changes no shared file: its BUILD declares the service
(`model_service(...)`), and the `./pants` launcher finds it there, so the cross-service
tests, the overlay targets and CI pick it up. Right after, `./pants test services/<name>::`
passes and the image builds.

It refuses a name that is taken or could not be both a Python package and a
Kubernetes (DNS) name, and leaves nothing behind if any step fails.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import keyword
import re
import shutil
import string
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

TEMPLATES = Path(__file__).parent / "templates"
MACROS = Path("build-support/macros.py")  # model_service(), which the generated BUILD calls
VALID_NAME = re.compile(r"[a-z][a-z0-9]{1,29}")
# Pants reads any file named BUILD or BUILD.* as a BUILD file, so that template has another name.
RENAMED = {"build": "BUILD"}


@dataclass(frozen=True)
class Task:
    """What differs between kinds of model: the starter data and model, and the metric with its bar."""

    dataset: str
    model_summary: str
    metric: str
    min_score: str
    feature_count: int


TASKS = {
    "classification": Task(
        dataset="the wine data set (178 wines from three cultivars, 13 chemical measurements each)",
        model_summary="Standard scaling, then a multinomial logistic regression.",
        metric="accuracy",
        min_score="0.90",
        feature_count=13,
    ),
    "regression": Task(
        dataset="the diabetes data set (442 patients, 10 baseline measurements, progression a year on)",
        model_summary="Standard scaling, then a ridge regression (alpha 1).",
        metric="r2",
        min_score="0.30",
        feature_count=10,
    ),
}


class Refused(Exception):
    """The service cannot be created; the message says why."""


def find_repo(start: Path) -> Path:
    for directory in (start, *start.parents):
        if (directory / "pants.toml").is_file() and (directory / MACROS).is_file():
            return directory
    raise Refused(f"not inside the monorepo (no pants.toml and {MACROS} above {start})")


def taken_names(repo: Path) -> dict[str, str]:
    """Top-level Python names already used in the repo's source roots -> where."""
    roots = [repo / "libs", repo / "services", repo / "tests", *sorted((repo / "tools").glob("*/"))]
    return {
        path.stem: str(path.relative_to(repo))
        for root in roots
        if root.is_dir()
        for path in root.iterdir()
        if path.is_dir() or path.suffix == ".py"
    }


def third_party_names(repo: Path) -> set[str]:
    """Distribution names of the direct requirements, as module names would spell them."""
    text = (repo / "3rdparty/python/requirements.txt").read_text()
    names = (re.match(r"[A-Za-z0-9._-]+", line.strip()) for line in text.splitlines())
    return {re.sub(r"[-.]", "_", match.group()).lower() for match in names if match}


def check_name(name: str, repo: Path) -> None:
    if not VALID_NAME.fullmatch(name):
        raise Refused(
            f"'{name}' is not a valid service name: use 2 to 30 lowercase letters and digits, starting with"
            " a letter (it must be both a Python package and a DNS label, so no '-' or '_')"
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise Refused(f"'{name}' is a Python keyword")
    for existing in (repo / "services" / name, repo / "k8s" / name):
        if existing.exists():
            raise Refused(f"'{name}' exists: {existing.relative_to(repo)}")
    if name in sys.stdlib_module_names:
        raise Refused(f"'{name}' would shadow the Python standard library's module {name}")
    taken = taken_names(repo)
    if name in taken:
        raise Refused(f"'{name}' would shadow the repo's package {taken[name]}")
    if name in third_party_names(repo) or importlib.util.find_spec(name) is not None:
        raise Refused(f"'{name}' would shadow the installed module {name}")


def templates(kind: str) -> Iterator[tuple[Path, Path]]:
    """(template, path relative to its destination) for each template of `kind`."""
    root = TEMPLATES / kind
    for template in sorted(root.rglob("*.tmpl")):
        relative = template.relative_to(root).with_suffix("")
        yield template, relative.with_name(RENAMED.get(relative.name, relative.name))


def render(name: str, task_name: str) -> dict[Path, str]:
    """Repo-relative path -> content, for every file of the new service."""
    task = TASKS[task_name]
    values = {**asdict(task), "name": name, "title": name.capitalize(), "task": task_name}
    files = {}
    for kind, destination in (
        ("service", f"services/{name}"),
        (task_name, f"services/{name}"),
        ("k8s", f"k8s/{name}"),
    ):
        for template, relative in templates(kind):
            files[Path(destination) / relative] = string.Template(template.read_text()).substitute(values)
    return files


def train(repo: Path, name: str) -> None:
    """Train the first model in this process, as `./pants run services/<name>:train` would."""
    sys.path.insert(0, str(repo / "services"))
    try:
        importlib.import_module(f"{name}.train").main(
            ["--output-dir", str(repo / "services" / name / "model")]
        )
    finally:
        sys.path.remove(str(repo / "services"))


def create(repo: Path, name: str, task: str, *, with_model: bool = True) -> list[Path]:
    """Write and train the service; on any failure, undo all of it. Returns the files written."""
    check_name(name, repo)
    files = render(name, task)
    try:
        for path, content in files.items():
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).write_text(content)
        if with_model:
            train(repo, name)
    except BaseException:
        for directory in (repo / "services" / name, repo / "k8s" / name):
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return sorted(files)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name", help="the service's name: lowercase letters and digits, e.g. wine")
    parser.add_argument("--task", required=True, choices=sorted(TASKS), help="the kind of model")
    arguments = parser.parse_args(argv)
    try:
        repo = find_repo(Path.cwd())
        written = create(repo, arguments.name, arguments.task)
    except Refused as refused:
        sys.exit(f"new-service: {refused}")
    name = arguments.name
    print(f"Created the {name} service ({arguments.task}):")
    print("\n".join(f"  {path}" for path in [*written, Path(f"services/{name}/model/")]))
    print(
        f"\nNext: ./pants test services/{name}::  Then make it yours: services/{name}/README.md lists the"
        f" files to edit; retrain with ./pants run services/{name}:train, and commit."
    )


if __name__ == "__main__":
    main()
