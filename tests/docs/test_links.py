"""Every relative link and every repo path the docs name exists.

The docs are README.md, CHANGELOG.md, docs/*.md, k8s/README.md, bench/README.md and each
service's README. Two things are checked in each:

- markdown links and images, `[text](path)` and `[text]: path`, resolved from the doc's own
  directory; web links (`http:`, `https:`, `mailto:`) and links to an anchor of the same page
  are left alone, and `#anchor` is cut from the rest;
- inline code that is a repo path: one word containing `/` that starts with a top-level
  directory of the repo (`libs/`, `services/`, `k8s/`, ...) or ends in a known file extension.
  It may exist from the repo root or from the doc's directory (a service's README names
  `model/model_card.json`). A Pants address counts by its directory (`tests/k8s::`,
  `services/titanic:serve`). Inline code that is a link's text is not checked, the link's
  target is. Placeholders and patterns (`<name>`, `{dev,prod}`, `*`, `$X`), absolute and
  home paths, and build output under `dist/` are not paths to check. Fenced code blocks are
  commands to run, not paths, and are skipped.

The test runs in a Pants sandbox holding the docs (//:docs) and every other file of the repo
(//:tree), so "exists" means: in the repo as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DOC_GLOBS = (
    "README.md",
    "CHANGELOG.md",
    "docs/*.md",
    "k8s/README.md",
    "bench/README.md",
    "services/*/README.md",
)
TOP_LEVEL = (
    "libs/",
    "services/",
    "k8s/",
    "tests/",
    "bench/",
    "tools/",
    "docs/",
    "build-support/",
    "build-support/",
    "3rdparty/",
    "base-image/",
    ".ci/",
    ".github/",
)
EXTENSIONS = (
    ".py",
    ".md",
    ".yaml",
    ".yml",
    ".toml",
    ".txt",
    ".json",
    ".proto",
    ".csv",
    ".png",
    ".npz",
    ".ubj",
    ".joblib",
    ".tmpl",
    ".lock",
)
WEB = ("http://", "https://", "mailto:")
PLACEHOLDER = re.compile(r"[<>{}*$?\[\]…]|\.\.\.")

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s+.*)?$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")


@dataclass(frozen=True)
class Broken:
    doc: str
    line: int
    kind: str  # "link" or "path"
    target: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.kind} {self.target}"


def docs(root: Path) -> list[Path]:
    return sorted({path for pattern in DOC_GLOBS for path in root.glob(pattern) if path.is_file()})


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """Each line outside fenced code blocks, numbered from 1."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def link_targets(line: str) -> Iterator[str]:
    """The local targets of a line's markdown links, without their #anchors."""
    found = [match.group(1) for match in INLINE_LINK.finditer(strip_code(line))]
    reference = REFERENCE_LINK.match(line)
    if reference:
        found.append(reference.group(1))
    for target in found:
        if target.startswith(WEB) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if path:
            yield path


def strip_code(line: str) -> str:
    """The line with its code spans blanked out (a link inside code is code, not a link)."""
    return CODE_SPAN.sub(lambda match: " " * len(match.group(0)), line)


def code_paths(line: str) -> Iterator[str]:
    """The repo paths a line names in inline code, but for the text of a link (its target is
    what is checked: [`server/serve.py`](../libs/modelserving/server/serve.py))."""
    for match in CODE_SPAN.finditer(INLINE_LINK.sub(lambda link: " " * len(link.group(0)), line)):
        candidate = repo_path(match.group(2).strip())
        if candidate is not None:
            yield candidate


def repo_path(code: str) -> str | None:
    """`code` as a path to check, or None when it is not one."""
    if not code or any(space in code for space in " \t") or code.startswith(WEB):
        return None
    if code.startswith(("/", "~", "//")) or PLACEHOLDER.search(code):
        return None
    path = code.removeprefix("./")
    if ":" in path:  # a Pants address: its directory (services/titanic:serve, tests/k8s::)
        path = path.split(":", 1)[0]
    if "/" not in path or path.startswith("dist/"):
        return None
    if path.startswith(TOP_LEVEL) or path.rstrip("/").endswith(EXTENSIONS):
        return path.rstrip("/") or None
    return None


def broken_references(root: Path, doc: Path) -> list[Broken]:
    """What `doc` links to or names that does not exist under `root`."""
    name = doc.relative_to(root).as_posix()
    here = doc.parent
    broken = []
    for number, line in prose_lines(doc.read_text(encoding="utf-8")):
        for target in link_targets(line):
            if not (here / target).exists():
                broken.append(Broken(name, number, "link", target))
        for path in code_paths(line):
            if not ((root / path).exists() or (here / path).exists()):
                broken.append(Broken(name, number, "path", path))
    return broken


def check(root: Path) -> list[Broken]:
    return [broken for doc in docs(root) for broken in broken_references(root, doc)]


# The repo's own docs.


def test_every_link_and_repo_path_in_the_docs_exists() -> None:
    root = Path.cwd()
    found = {doc.relative_to(root).as_posix() for doc in docs(root)}
    # The sandbox must hold the docs and the tree, or this test would pass on nothing.
    assert {"README.md", "CHANGELOG.md", "k8s/README.md", "bench/README.md"} <= found, sorted(found)
    assert (root / "libs").is_dir() and (root / "services").is_dir(), "the repo's files are not here"
    broken = check(root)
    assert not broken, f"{len(broken)} broken link(s) or path(s):\n" + "\n".join(map(str, broken))


# The checker itself.


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "libs/modelserving/runtime").mkdir(parents=True)
    (tmp_path / "libs/modelserving/runtime/admission.py").write_text("")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/operations.md").write_text("# Operations\n")
    (tmp_path / "services/iris/model").mkdir(parents=True)
    (tmp_path / "services/iris/model/model_card.json").write_text("{}")
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s/release").write_text("")
    return tmp_path


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_links_and_paths_that_exist_pass(repo: Path) -> None:
    write(
        repo,
        "README.md",
        "See [operations](docs/operations.md#alerts), [the web](https://example.com/x.md),\n"
        "[above](#top), `libs/modelserving/runtime/admission.py`, `k8s/release <service> <env>`,\n"
        "`libs/modelserving/runtime/`, `services/iris:serve`, `libs/modelserving::`.\n"
        "[ref]: docs/operations.md\n",
    )
    write(repo, "services/iris/README.md", "The card: `model/model_card.json`; [root](../../README.md).\n")
    assert check(repo) == []


def test_a_broken_link_fails(repo: Path) -> None:
    write(repo, "README.md", "Intro\n\nSee [operations](docs/operation.md#alerts).\n")
    assert [str(broken) for broken in check(repo)] == ["README.md:3: link docs/operation.md"]


def test_a_link_is_resolved_from_its_docs_directory(repo: Path) -> None:
    write(repo, "docs/architecture.md", "[ops](operations.md), [wrong](docs/operations.md)\n")
    assert [str(broken) for broken in check(repo)] == ["docs/architecture.md:1: link docs/operations.md"]


def test_a_broken_reference_link_and_image_fail(repo: Path) -> None:
    write(repo, "CHANGELOG.md", "![figure](bench/results/results.png)\n[ops]: docs/ops.md\n")
    assert [str(broken) for broken in check(repo)] == [
        "CHANGELOG.md:1: link bench/results/results.png",
        "CHANGELOG.md:2: link docs/ops.md",
    ]


def test_code_as_a_links_text_is_checked_by_its_target(repo: Path) -> None:
    write(
        repo,
        "docs/architecture.md",
        "[`runtime/admission.py`](../libs/modelserving/runtime/admission.py),\n"
        "[`runtime/batching.py`](../libs/modelserving/runtime/batching.py)\n",
    )
    assert [str(broken) for broken in check(repo)] == [
        "docs/architecture.md:2: link ../libs/modelserving/runtime/batching.py"
    ]


def test_a_repo_path_that_does_not_exist_fails(repo: Path) -> None:
    write(
        repo,
        "docs/architecture.md",
        "Admission: `libs/modelserving/admission.py`, `tests/docs:tests`, `examples/x.py`.\n",
    )
    assert [str(broken) for broken in check(repo)] == [
        "docs/architecture.md:1: path libs/modelserving/admission.py",
        "docs/architecture.md:1: path tests/docs",
        "docs/architecture.md:1: path examples/x.py",
    ]


def test_what_is_not_a_repo_path_is_not_checked(repo: Path) -> None:
    write(
        repo,
        "README.md",
        "`services/<name>/main.py`, `k8s/<service>/overlays/{dev,staging,prod}`, `services/*/README.md`,\n"
        "`/v2/models/{name}/infer`, `~/.cache/pants-bootstrap/`, `/tmp`, `dist/manifests/x.yaml`,\n"
        "`application/json`, `app.kubernetes.io/name`, `modelserving.runtime.admission`,\n"
        "`./pants test ::`, `http://127.0.0.1:8000/docs`, `$REGISTRY/modelserving-titanic`\n"
        "```bash\n"
        "./pants run services/wine:train    # a fenced block is a command\n"
        "cat libs/missing.py\n"
        "```\n"
        "A link in code is code: `[x](missing.md)`.\n",
    )
    assert check(repo) == []


def test_docs_found_are_the_documented_set(repo: Path) -> None:
    for name in ("README.md", "CHANGELOG.md", "docs/api.md", "bench/README.md", "services/iris/README.md"):
        write(repo, name, "")
    write(repo, "tests/README.md", "[x](missing.md)\n")  # not one of the docs checked
    assert [doc.relative_to(repo).as_posix() for doc in docs(repo)] == [
        "CHANGELOG.md",
        "README.md",
        "bench/README.md",
        "docs/api.md",
        "docs/operations.md",
        "services/iris/README.md",
    ]
