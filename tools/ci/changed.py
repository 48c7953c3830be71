"""Pull-request CI: lint, type-check, test and package only what a change touches.

    .ci/changed origin/main               # build what changed since the merge base with origin/main
    .ci/changed origin/main --list        # only say what would be built and published
    .ci/changed origin/main --list --json # the same, for machines
    .ci/changed HEAD~1 --publish          # build, then publish the changed images and overlays

Pants decides what a change touches: `--changed-since=<merge base>
--changed-dependents=transitive` follows the dependency graph from the changed files
to everything that depends on them (a service's serving code -> its tests, image and
overlays; its training-only code -> its tests; libs/ -> every service; base-image/ ->
every image; a kustomize component -> every overlay). The docs (//:docs) run only their
link check (tests/docs), which also reruns when any other file changes. No file lists the
services (the launcher finds them), so a new service plans its own targets, the
cross-service tests, its image and its overlays, and nothing of the others'. Two kinds of
change Pants cannot follow, and what this script does about them:

- build configuration (pants.toml, the ./pants launcher, the BUILD macros in
  build-support/, tool settings in pyproject.toml, CI itself in
  .ci/ and .github/, the system tools, Pants' own wheels and its Python tools under
  3rdparty/): any target may build differently, so every target is built;
- a pin in 3rdparty/python/constraints.txt, which no target owns, or its wheel's line
  in wheels.txt, which every image's SBOM reads: each pin names the direct requirements
  that need it (`# for: ...`), so those requirements and everything that depends on
  them are built (and the CI tests, which copy the whole build). A pin without that
  note rebuilds every requirement's dependents.

(requirements.txt needs no help: Pants itself marks every requirement as changed.)

Publishing (`--publish`, main-branch CI): everything is built as a release
(BASE_IMAGE_BUILD=release: exactly base-image/packages.lock); each changed image is tagged
with the commit and pushed to $REGISTRY when it is set, and its SBOM written to
dist/codegen/; each changed overlay is rendered as a release, its image pinned by the digest
the registry answered the push with and APP_REVISION set to the commit (k8s/release), into
dist/manifests/<service>-<env>.yaml. Without a registry there is no digest, so no release.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

BUILD_CONFIGURATION = (
    "pants.toml",
    "pants",
    "pyproject.toml",
    "build-support/",
    ".ci/",
    ".github/",
    "3rdparty/system/",  # the system tools every goal gets
    "3rdparty/pants/",  # Pants itself
    "3rdparty/python/tools.txt",  # Pants' Python tools (pytest, black, ruff, mypy, ...)
)
CONSTRAINTS = "3rdparty/python/constraints.txt"
WHEELS = "3rdparty/python/wheels.txt"  # every wheel's sha256: changes with the pins in CONSTRAINTS
PIN_FILES = (CONSTRAINTS, WHEELS)
WHOLE_BUILD = "//:tree"  # every file of the build, for the tests that copy it
REQUIREMENTS_TARGET = "3rdparty/python"


@dataclass
class Plan:
    """What a change touches: the reasons, the targets, and what would be published."""

    base: str
    changed_files: list[str]
    reasons: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # address -> repository
    overlays: list[str] = field(default_factory=list)  # k8s/<service>/overlays/<env>


def run(*command: str, cwd: Path, capture: bool = True) -> str:
    result = subprocess.run(command, cwd=cwd, text=True, stdout=subprocess.PIPE if capture else None)
    if result.returncode != 0:
        sys.exit(f"changed: `{' '.join(command)}` failed (exit {result.returncode})")
    return result.stdout if capture else ""


def pants(repo: Path, *args: str, capture: bool = True) -> str:
    return run("./pants", *args, cwd=repo, capture=capture)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def changed_files(repo: Path, base: str) -> list[str]:
    """Files changed since `base` in the working tree, untracked ones included (as Pants sees it)."""
    diff = run("git", "diff", "--name-only", base, cwd=repo)
    untracked = run("git", "ls-files", "--others", "--exclude-standard", cwd=repo)
    return sorted(set(lines(diff)) | set(lines(untracked)))


def pin_notes(text: str) -> dict[str, tuple[str, list[str]]]:
    """`name==version  # for: a, b` lines -> {normalised name: (version, [a, b])}."""
    notes = {}
    for line in text.splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s*(?:#\s*for:\s*(.*))?$", line)
        if match:
            name, version, users = match.groups()
            notes[normalise(name)] = (
                version,
                [user.strip() for user in (users or "").split(",") if user.strip()],
            )
    return notes


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_lines(text: str) -> dict[str, str]:
    """`name==version --hash=...` lines of wheels.txt -> {normalised name: the line}."""
    return {normalise(line.split("==")[0]): line for line in text.splitlines() if "==" in line}


def at_base(repo: Path, base: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{base}:{path}"], cwd=repo, capture_output=True, text=True).stdout


def requirements_for_changed_pins(repo: Path, base: str) -> tuple[list[str], list[str]]:
    """(requirement addresses whose pinned closure changed, what changed), from the pin files.

    A distribution changed when its version in constraints.txt or its wheel (line) in
    wheels.txt did; the `# for:` notes in constraints.txt say which requirements need it.
    """
    before = pin_notes(at_base(repo, base, CONSTRAINTS))
    after = pin_notes((repo / CONSTRAINTS).read_text())
    wheels_before = wheel_lines(at_base(repo, base, WHEELS))
    wheels_after = wheel_lines((repo / WHEELS).read_text())
    names = before.keys() | after.keys() | wheels_before.keys() | wheels_after.keys()
    changed = sorted(  # notes alone change nothing
        name
        for name in names
        if before.get(name, ("",))[0] != after.get(name, ("",))[0]
        or wheels_before.get(name) != wheels_after.get(name)
    )
    users: set[str] = set()
    for name in changed:
        noted = after.get(name, before.get(name, ("", [])))[1]
        if not noted:
            return [f"{REQUIREMENTS_TARGET}:"], [f"{name} (no '# for:' note: every requirement)"]
        users.update(noted)
    return [f"{REQUIREMENTS_TARGET}#{user}" for user in sorted(users)], changed


NO_COMMIT = "0" * 40  # GitHub's `before` for a branch's first push


def plan(repo: Path, base_ref: str) -> Plan:
    if base_ref == NO_COMMIT:
        result = Plan(base=base_ref, changed_files=[], reasons=["no previous commit: every target"])
        result.targets = sorted(lines(pants(repo, "list", "::")))
        describe(repo, result)
        return result
    base = run("git", "merge-base", base_ref, "HEAD", cwd=repo).strip()
    result = Plan(base=base, changed_files=changed_files(repo, base))
    targets: set[str] = set()
    configuration = [f for f in result.changed_files if f.startswith(BUILD_CONFIGURATION)]
    if configuration:
        result.reasons.append(f"build configuration changed ({', '.join(configuration)}): every target")
        targets.update(lines(pants(repo, "list", "::")))
    else:
        # Pin files alone: only what the changed pins reach, and what copies the whole build
        # (//:tree: the CI tests). Every image's SBOM reads wheels.txt, but a changed pin changes
        # only its users' images. Pin files with other files: Pants' own answer, every SBOM in.
        if set(result.changed_files) <= set(PIN_FILES):
            targets.update([WHOLE_BUILD, *lines(pants(repo, "dependents", "--transitive", WHOLE_BUILD))])
        else:
            targets.update(
                lines(pants(repo, f"--changed-since={base}", "--changed-dependents=transitive", "list"))
            )
        if set(PIN_FILES) & set(result.changed_files):
            requirements, pins = requirements_for_changed_pins(repo, base)
            if requirements:
                result.reasons.append(
                    f"pins changed ({', '.join(pins)}): dependents of {', '.join(requirements)}"
                )
                targets.update(requirements)
                targets.update(lines(pants(repo, "dependents", "--transitive", *requirements)))
    result.targets = sorted(targets)
    if result.targets:
        describe(repo, result)
    return result


def describe(repo: Path, result: Plan) -> None:
    """Fill in the plan's tests, images and overlays from the targets' own declarations."""
    with spec_file(result.targets) as specs:
        peeked = json.loads(
            pants(
                repo,
                f"--spec-files={specs}",
                "--filter-target-type=python_test,docker_image,files,file",
                "peek",
            )
        )
    for target in peeked:
        kind, address = target["target_type"], target["address"]
        if kind == "python_test":
            result.tests.append(address)
        elif kind == "docker_image":
            result.images[address] = target["repository"]
        elif "overlay" in (target.get("tags") or []):
            result.overlays.append(target["description"])
    result.tests.sort()
    result.overlays = sorted(set(result.overlays))


@contextlib.contextmanager
def spec_file(specs: list[str]) -> Iterator[str]:
    """A temporary file of Pants specs, one per line (for `--spec-files`)."""
    with tempfile.NamedTemporaryFile("w", suffix=".specs") as handle:
        handle.write("\n".join(specs) + "\n")
        handle.flush()
        yield handle.name


def report(result: Plan) -> str:
    out = [f"Changed since {result.base[:12]}: {len(result.changed_files)} file(s)"]
    out += [f"  {path}" for path in result.changed_files]
    out += [f"Because {reason}" for reason in result.reasons]
    if not result.targets:
        out.append("Nothing to build: no target owns the changed files.")
        return "\n".join(out)
    out.append(f"Targets to lint, check, test and package: {len(result.targets)}")
    out.append(f"Tests ({len(result.tests)}):")
    out += [f"  {test}" for test in result.tests]
    out.append(f"Images to publish ({len(result.images)}):")
    out += [f"  {repository}  ({address})" for address, repository in sorted(result.images.items())]
    out.append(f"Overlays to publish ({len(result.overlays)}):")
    out += [f"  {overlay}" for overlay in result.overlays]
    return "\n".join(out)


def build(repo: Path, result: Plan) -> None:
    with spec_file(result.targets) as specs:
        pants(repo, f"--spec-files={specs}", "lint", "check", "test", capture=False)
        if result.images:
            pants(
                repo, f"--spec-files={specs}", "--filter-target-type=docker_image", "package", capture=False
            )


def publish(repo: Path, result: Plan, commit: str) -> None:
    registry = os.environ.get("REGISTRY", "").rstrip("/")
    docker = shutil.which("docker") or "docker"
    pushed: dict[str, str] = {}  # image name -> <registry>/<name>@sha256:<digest>
    for repository in sorted(result.images.values()):
        if not registry:
            print(f"REGISTRY is not set: {repository}:{commit} stays in the local engine")
            continue
        remote = f"{registry}/{repository}:{commit}"
        run(docker, "tag", f"{repository}:{commit}", remote, cwd=repo)
        run(docker, "push", remote, cwd=repo, capture=False)
        pushed[repository] = pushed_digest(docker, repo, remote)
        print(f"pushed {remote} as {pushed[repository]}")
    # Each image's SBOM, next to the build output: dist/codegen/<service dir>/sbom.cdx.json.
    sboms = [
        address.replace(":image", ":sbom").replace(":base", ":sbom") for address in sorted(result.images)
    ]
    if sboms:
        pants(repo, "export-codegen", *sboms, capture=False)
    manifests = repo / "dist" / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    for overlay in result.overlays:
        _, service, _, env = overlay.split("/")
        reference = pushed.get(f"modelserving-{service}")
        if reference is None:
            print(f"{overlay}: no image of {service} pushed (no registry, or unchanged): no release")
            continue
        target = manifests / f"{service}-{env}.yaml"
        target.write_text(render_release(repo, service, env, reference, commit))
        print(f"rendered {overlay} -> {target.relative_to(repo)}")


def pushed_digest(docker: str, repo: Path, remote: str) -> str:
    """`<registry>/<name>@sha256:...`: what the registry stored `remote` as."""
    name = remote.rpartition(":")[0]
    digests = json.loads(
        run(docker, "image", "inspect", "--format", "{{json .RepoDigests}}", remote, cwd=repo)
    )
    matching = [digest for digest in digests if digest.startswith(name + "@")]
    if not matching:
        raise SystemExit(f"{remote}: the engine recorded no digest for it after the push")
    return str(matching[0])


def render_release(repo: Path, service: str, env: str, reference: str, commit: str) -> str:
    """The overlay rendered as the release of `reference` (image@digest) and `commit`, the
    committed files untouched."""
    with tempfile.TemporaryDirectory() as scratch:
        k8s = Path(scratch) / "k8s"
        shutil.copytree(repo / "k8s", k8s)
        run(str(k8s / "release"), service, env, reference, commit, cwd=repo)
        return run("kubectl", "kustomize", str(k8s / service / "overlays" / env), cwd=repo)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base", help="the git ref the change is compared with (its merge base with HEAD)")
    parser.add_argument(
        "--list", action="store_true", help="say what would be built and published; build nothing"
    )
    parser.add_argument("--json", action="store_true", help="with --list: print the plan as JSON")
    parser.add_argument("--publish", action="store_true", help="after building, publish images and overlays")
    arguments = parser.parse_args(argv)
    repo = Path(run("git", "rev-parse", "--show-toplevel", cwd=Path.cwd()).strip())

    result = plan(repo, arguments.base)
    print(json.dumps(asdict(result), indent=2) if arguments.json else report(result), flush=True)
    if arguments.list or not result.targets:
        return
    commit = os.environ.setdefault("GIT_COMMIT", run("git", "rev-parse", "HEAD", cwd=repo).strip())
    os.environ.setdefault("GIT_COMMIT_DATE", run("git", "log", "-1", "--format=%cI", cwd=repo).strip())
    if arguments.publish:
        # What is published is built from exactly base-image/packages.lock (base-image/fetch-packages).
        os.environ["BASE_IMAGE_BUILD"] = "release"
    build(repo, result)
    if arguments.publish:
        publish(repo, result, commit)


if __name__ == "__main__":
    main()
