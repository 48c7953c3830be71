"""A throw-away copy of the repo for CI's tests: the build's files, committed, with ./pants that works."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

# Hidden entries of the repo; every other hidden one in a test sandbox is Pants' own.
HIDDEN_IN_REPO = {".ci", ".github", ".gitignore"}


def belongs_to_repo(entry: Path) -> bool:
    """False for what Pants adds to a test sandbox next to the files of //:tree."""
    if entry.name.startswith("."):
        return entry.name in HIDDEN_IN_REPO
    return not (entry.suffix in {".pex", ".sh"} or entry.name == "extra-output")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def make_throwaway_repo(destination: Path) -> Path:
    """The files of //:tree (this sandbox's copy of the repo) as a fresh git repo, one commit: `base`."""
    for entry in filter(belongs_to_repo, Path.cwd().iterdir()):
        if entry.is_dir():
            shutil.copytree(entry, destination / entry.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(entry, destination / entry.name)
    git(destination, "init", "-q", "-b", "main")
    git(destination, "config", "user.email", "ci@example.invalid")
    git(destination, "config", "user.name", "CI test")
    git(destination, "add", "-A")
    git(destination, "commit", "-q", "-m", "base")
    git(destination, "tag", "base")
    return destination


def stop_pantsd(repo: Path) -> None:
    """Stop the Pants daemon ./pants started in the copy (each buildroot gets its own)."""
    for pid_file in repo.glob(".pids/*/pantsd/pid"):
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
