"""Which Debian packages the base image gets, as Debian moves on (base-image/fetch-packages).

A release build installs exactly packages.lock and stops in one line when a pinned version
has left Debian's archive; a test build then says so in one line and installs packages.txt
as resolved today; a .deb whose sha256 is not the pinned one stops both. The real scripts
run here against a fake archive: `apt-get` and `apt-cache` stand-ins (below) that serve
.debs built here, so nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# apt-get and apt-cache over the archive in $FAKE_ARCHIVE ({name: {version: .deb path}}, the
# last version current); each call is logged to $FAKE_ARCHIVE.log.
FAKE_APT = """
import json, os, shutil, sys, hashlib
archive = json.load(open(os.environ["FAKE_ARCHIVE"]))
tool, args = os.path.basename(sys.argv[0]), [a for a in sys.argv[1:] if not a.startswith("-")]
with open(os.environ["FAKE_ARCHIVE"] + ".log", "a") as log:
    log.write(" ".join([tool, *sys.argv[1:]]) + "\\n")
def versions(name):
    return list(archive.get(name, {}))
def stanza(name, version):
    digest = hashlib.sha256(open(archive[name][version], "rb").read()).hexdigest()
    print(f"Package: {name}\\nVersion: {version}\\nArchitecture: all\\nSHA256: {digest}\\n")
if tool == "apt-get" and args[:1] == ["update"]:
    sys.exit(0)
if tool == "apt-get" and args[:1] == ["download"]:
    wanted = [pin.partition("=")[::2] for pin in args[1:]]
    for name, version in wanted:
        if (version or None) not in [*versions(name), None] or not versions(name):
            sys.exit(print(f"E: Version '{version}' for '{name}' was not found") or 100)
    for name, version in wanted:
        version = version or versions(name)[-1]
        shutil.copy(archive[name][version], f"{name}_{version}_all.deb")
    sys.exit(0)
if tool == "apt-get" and "install" in args:
    for name in args[args.index("install") + 1:]:
        print(f"Inst {name} ({versions(name)[-1]} Debian:12.12/oldstable [all])")
    sys.exit(0)
if tool == "apt-cache" and args[:1] == ["show"]:
    missing = False
    for word in args[1:]:
        name, _, version = word.partition("=")
        latest = "--no-all-versions" in sys.argv
        chosen = [version] if version else versions(name)[-1:] if latest else versions(name)
        chosen = [v for v in chosen if v in versions(name)]
        missing |= not chosen
        for v in chosen:
            stanza(name, v)
    sys.exit(100 if missing else 0)
sys.exit(f"fake apt: unexpected {sys.argv}")
"""


def build_deb(directory: Path, name: str, version: str) -> Path:
    root = directory / f"{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: test <t@example.invalid>\n"
        f"Description: {name} for the test\n"
    )
    deb = directory / f"{name}_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True, capture_output=True
    )
    return deb


RELEASES = {"alpha": ["1.0"], "beta": ["1.0", "1.1"]}  # the last one current


def make_base_image(tmp_path: Path) -> Path:
    """A copy of base-image/'s scripts wanting alpha and beta; the archive: alpha 1.0, beta 1.0 then 1.1."""
    debs = tmp_path / "archive"
    debs.mkdir()
    archive = {name: {v: str(build_deb(debs, name, v)) for v in vs} for name, vs in RELEASES.items()}
    (tmp_path / "archive.json").write_text(json.dumps(archive))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("apt-get", "apt-cache"):
        (bin_dir / tool).write_text(f"#!{sys.executable}\n{FAKE_APT}")
        (bin_dir / tool).chmod(0o755)
    base = tmp_path / "base-image"
    base.mkdir()
    for script in ("fetch-packages", "resolve-packages"):
        shutil.copy2(Path("base-image") / script, base / script)
    (base / "packages.txt").write_text("# wanted\nalpha\nbeta\n")
    (base / "packages.excluded").write_text("# none\n")
    return base


def fetch(tmp_path: Path, base: Path, mode: str | None = None) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "debs"
    out.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "FAKE_ARCHIVE": str(tmp_path / "archive.json"),
        **({"BASE_IMAGE_BUILD": mode} if mode else {}),
    }
    return subprocess.run([str(base / "fetch-packages"), str(out)], env=env, capture_output=True, text=True)


def fetched(tmp_path: Path) -> list[str]:
    return sorted(deb.name for deb in (tmp_path / "debs").glob("*.deb"))


def archive_sha256(tmp_path: Path, name: str, version: str) -> str:
    return hashlib.sha256((tmp_path / "archive" / f"{name}_{version}_all.deb").read_bytes()).hexdigest()


def write_lock(base: Path, pins: list[tuple[str, str, str]]) -> None:
    """packages.lock of `(name, version, sha256)` pins."""
    (base / "packages.lock").write_text("".join(f"{n}={v} {digest}\n" for n, v, digest in pins))


def test_every_build_installs_exactly_the_lock_while_debian_has_it(tmp_path: Path) -> None:
    base = make_base_image(tmp_path)
    lock = [("alpha", "1.0"), ("beta", "1.1")]
    write_lock(base, [(n, v, archive_sha256(tmp_path, n, v)) for n, v in lock])
    for mode in (None, "release"):
        result = fetch(tmp_path, base, mode)
        assert (result.returncode, result.stderr, result.stdout) == (0, "", "packages.lock\n")
        assert fetched(tmp_path) == ["alpha_1.0_all.deb", "beta_1.1_all.deb"]


def stale_lock(tmp_path: Path) -> Path:
    """A lock pinning beta 1.0, which the archive has since replaced by 1.1."""
    base = make_base_image(tmp_path)
    archive = json.loads((tmp_path / "archive.json").read_text())
    pins = [
        ("alpha", "1.0", archive_sha256(tmp_path, "alpha", "1.0")),
        ("beta", "1.0", archive_sha256(tmp_path, "beta", "1.0")),
    ]
    write_lock(base, pins)
    del archive["beta"]["1.0"]
    (tmp_path / "archive.json").write_text(json.dumps(archive))
    return base


def test_a_release_build_stops_in_one_line_when_a_pinned_version_is_gone(tmp_path: Path) -> None:
    result = fetch(tmp_path, stale_lock(tmp_path), "release")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "fetch-packages: beta=1.0, pinned in packages.lock, is no longer in Debian's archive:"
        " re-pin with base-image/update-packages and commit base-image/packages.lock"
    ]


def test_a_test_build_says_so_and_installs_packages_txt_as_resolved_today(tmp_path: Path) -> None:
    result = fetch(tmp_path, stale_lock(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "fetch-packages: packages.lock is stale (beta=1.0 no longer in Debian's archive): this test build"
        " installs packages.txt as resolved today; a release build would stop"
        " (base-image/update-packages re-pins)"
    ]
    assert result.stdout == "today's resolution of packages.txt\n"
    assert fetched(tmp_path) == ["alpha_1.0_all.deb", "beta_1.1_all.deb"]
    calls = (tmp_path / "archive.json.log").read_text().splitlines()
    assert "apt-get update -q" in calls, "stale package lists are refreshed before a pin counts as gone"


def test_a_deb_that_is_not_the_pinned_one_stops_every_build(tmp_path: Path) -> None:
    base = make_base_image(tmp_path)
    real = archive_sha256(tmp_path, "alpha", "1.0")
    pins = [("alpha", "1.0", "0" * 64), ("beta", "1.1", archive_sha256(tmp_path, "beta", "1.1"))]
    write_lock(base, pins)
    for mode in (None, "release"):
        result = fetch(tmp_path, base, mode)
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"fetch-packages: alpha=1.0: the downloaded .deb's sha256 is {real},"
            f" packages.lock says {'0' * 64}:"
            " re-pin with base-image/update-packages and commit base-image/packages.lock"
        ]


def test_an_unknown_build_mode_is_refused(tmp_path: Path) -> None:
    result = fetch(tmp_path, make_base_image(tmp_path), "nightly")
    assert (result.returncode, result.stderr) == (
        1,
        "fetch-packages: BASE_IMAGE_BUILD must be release or test, not 'nightly'\n",
    )
