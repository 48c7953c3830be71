"""The ./pants launcher: system tools per goal, wheels by hash, deferral, and a fast warm start.

Each test runs the real launcher and provisioning script in a throw-away repo whose tool
declaration and wheel list are the test's own (one small wheel, built here, served from a
local directory), so nothing is installed on this machine and nothing leaves it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import time
import tomllib
import zipfile
from pathlib import Path

WHEEL = "tinypkg-1.0-py3-none-any.whl"


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def build_wheel(directory: Path) -> Path:
    """A minimal valid wheel, so pip can download (here: copy) it from a local directory."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / WHEEL
    files = {
        "tinypkg/__init__.py": "",
        "tinypkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        "tinypkg-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr(
            "tinypkg-1.0.dist-info/RECORD",
            "".join(f"{name},,\n" for name in files) + "tinypkg-1.0.dist-info/RECORD,,\n",
        )
    return wheel


def make_repo(tmp_path: Path, tools: str, wheel_hash: str | None = None) -> Path:
    """The launcher, its provisioning script and pants.toml, with this test's tools and wheel list."""
    repo = tmp_path / "repo"
    (repo / "3rdparty/system").mkdir(parents=True)
    (repo / "3rdparty/python").mkdir(parents=True)
    shutil.copy2("pants", repo / "pants")
    shutil.copy2("pants.toml", repo / "pants.toml")
    shutil.copy2("3rdparty/system/provision", repo / "3rdparty/system/provision")
    (repo / "3rdparty/system/tools.txt").write_text(tools)
    wheel = build_wheel(tmp_path / "index")
    digest = wheel_hash or hashlib.sha256(wheel.read_bytes()).hexdigest()
    (repo / "3rdparty/python/wheels.txt").write_text(f"# test\ntinypkg==1.0 --hash=sha256:{digest}\n")
    return repo


def warm_cache(tmp_path: Path) -> Path:
    """A bootstrapped cache whose Pants entry points are fakes that print what they were given."""
    version = tomllib.loads(Path("pants.toml").read_text())["GLOBAL"]["pants_version"]
    cache = tmp_path / "cache" / "pants-bootstrap" / f"pants-{version}-pex-2.1.137-v3"
    report = (
        'echo "$(basename $0) args=$*"\n'
        'echo "pex=$PANTS_PEX_CLI_URL_TEMPLATE known=$PANTS_PEX_CLI_KNOWN_VERSIONS"\n'
        'echo "ca=$PANTS_CA_CERTS_PATH server=$_PANTS_SERVER_EXE"\n'
        'echo "find_links=$PANTS_PYTHON_REPOS_FIND_LINKS"\n'
    )
    executable(cache / "pants-python", "#!/bin/sh\n" + report)
    executable(cache / "pants" / "pants" / "bin" / "native_client", "#!/bin/sh\n" + report)
    (cache / "env").write_text(
        "ca_bundle=/etc/ssl/certs/ca-certificates.crt\n"
        f"PANTS_PEX_CLI_URL_TEMPLATE=file://{cache}/pex\n"
        "PANTS_PEX_CLI_KNOWN_VERSIONS='[\"v2.1.137|linux_x86_64|abc|123\"]'\n"
    )
    return cache


def launcher_env(tmp_path: Path, first: Path | None = None, **extra: str) -> dict[str, str]:
    """The launcher's environment: `first` (fakes) ahead of the system's and Python's bin directories."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PANTS_CA_CERTS_PATH", "PATH"} and not key.startswith(("PANTS_", "_PANTS", "PIP_"))
    }
    found = (shutil.which(command) for command in ("python3.11", "pip3"))
    python_dirs = [str(Path(path).parent) for path in found if path]
    return {
        **env,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PATH": ":".join([*([str(first)] if first else []), "/usr/bin", "/bin", *python_dirs]),
        # pip takes the wheel from the test's directory, never from an index.
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(tmp_path / "index"),
        **extra,
    }


def run(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(repo / "pants"), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


NO_TOOLS = "# command package suite goals why\n"


def test_defers_to_an_official_launcher_on_path(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, NO_TOOLS)
    bin_dir = tmp_path / "bin"
    executable(bin_dir / "pants", '#!/bin/sh\necho "official launcher: $*"\n')
    result = run(repo, launcher_env(tmp_path, first=bin_dir), "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "official launcher: --version\n"


def test_warm_start_runs_the_native_client_with_the_pex_tool_ca_bundle_and_wheelhouse(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, NO_TOOLS)
    cache = warm_cache(tmp_path)
    env = launcher_env(tmp_path)
    run(repo, env, "--version")  # the first call fills the wheelhouse
    started = time.perf_counter()
    result = run(repo, env, "test", "::")
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    wheelhouse = tmp_path / "cache" / "pants-bootstrap" / "wheelhouse"
    assert result.stdout.splitlines() == [
        "native_client args=test ::",
        f'pex=file://{cache}/pex known=["v2.1.137|linux_x86_64|abc|123"]',
        f"ca=/etc/ssl/certs/ca-certificates.crt server={cache}/pants-python",
        f"find_links=['file://{wheelhouse}']",
    ]
    assert result.stderr == ""  # nothing was bootstrapped, provisioned or downloaded
    assert (wheelhouse / WHEEL).is_file()
    print(f"launcher overhead with a warm cache: {elapsed * 1000:.1f} ms")


def test_native_client_can_be_turned_off(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, NO_TOOLS)
    warm_cache(tmp_path)
    result = run(repo, launcher_env(tmp_path, PANTS_NO_NATIVE_CLIENT="1"), "--version")
    assert result.stdout.splitlines()[0] == "pants-python args=--version"


def test_a_tampered_wheel_hash_stops_the_build_with_one_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, NO_TOOLS, wheel_hash="0" * 64)
    warm_cache(tmp_path)
    result = run(repo, launcher_env(tmp_path), "test", "::")
    assert result.returncode == 1
    assert result.stdout == "", "Pants must not run"
    (line,) = result.stderr.splitlines()
    actual = hashlib.sha256((tmp_path / "index" / WHEEL).read_bytes()).hexdigest()
    assert line == (
        f"pants-bootstrap: tinypkg==1.0: the downloaded wheel's sha256 is {actual}, not {'0' * 64}"
        " as 3rdparty/python/wheels.txt says; if that pin changed on purpose,"
        " run 3rdparty/python/regenerate-constraints"
    )
    assert not list(
        (tmp_path / "cache/pants-bootstrap/wheelhouse").glob(".verified-*")
    ), "nothing was verified"


# A tool only tests and the benchmark need, which no machine has.
NEEDS_A_TOOL_FOR_TESTS = (
    "# command        package         suite     goals            why\n"
    "no-such-tool-x   no-such-pkg-x   bookworm  test,run:bench*  a tool only tests and the benchmark need\n"
)


def fakes(tmp_path: Path, uid: int) -> Path:
    """`id` answering `uid`, and an apt-get that logs its arguments and, on install, puts the tool on PATH."""
    bin_dir = tmp_path / "fake-bin"
    executable(bin_dir / "id", f'#!/bin/sh\n[ "$1" = -u ] && echo {uid} || exec /usr/bin/id "$@"\n')
    executable(
        bin_dir / "apt-get",
        f'#!/bin/sh\necho "$*" >> {tmp_path}/apt.log\n'
        f'case "$*" in *install*) printf "#!/bin/sh\\n" > {bin_dir}/no-such-tool-x;'
        f" chmod +x {bin_dir}/no-such-tool-x ;; esac\n",
    )
    return bin_dir


def test_serving_installs_nothing_that_only_tests_need(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, NEEDS_A_TOOL_FOR_TESTS)
    warm_cache(tmp_path)
    result = run(repo, launcher_env(tmp_path, first=fakes(tmp_path, uid=0)), "run", "services/titanic:serve")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "native_client args=run services/titanic:serve"
    assert not (tmp_path / "apt.log").exists()


def test_as_root_the_tools_a_goal_needs_are_installed_from_debian_first(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, NEEDS_A_TOOL_FOR_TESTS)
    warm_cache(tmp_path)
    result = run(repo, launcher_env(tmp_path, first=fakes(tmp_path, uid=0)), "test", "::")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "apt.log").read_text().splitlines() == [
        "update -qq",
        "install -y -qq --no-install-recommends no-such-pkg-x",
    ]
    assert result.stdout.splitlines()[0] == "native_client args=test ::"


def test_not_root_a_missing_tool_is_named_in_one_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, NEEDS_A_TOOL_FOR_TESTS)
    warm_cache(tmp_path)
    result = run(repo, launcher_env(tmp_path, first=fakes(tmp_path, uid=1000)), "run", "bench:bench")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "provision: missing no-such-tool-x (for run): install the Debian packages no-such-pkg-x/bookworm"
        " (suite after the /; see 3rdparty/system/tools.txt), or run ./pants once as root"
    ]
    assert not (tmp_path / "apt.log").exists()


def needed(*args: str) -> list[str]:
    """The tools 3rdparty/system/tools.txt declares for these ./pants arguments."""
    result = subprocess.run(
        ["3rdparty/system/provision", "--needed", *args], capture_output=True, text=True, check=True
    )
    return result.stdout.split()


def test_the_declared_tools_go_to_the_goals_that_need_them() -> None:
    assert needed("run", "services/titanic:serve") == []
    assert needed("package", "services/titanic:serve") == []
    assert set(needed("test", "::")) >= {"docker", "dockerd", "strip", "chromium", "wrk", "kubectl"}
    assert set(needed("package", "::")) == {"docker", "dockerd", "strip"}
    assert set(needed("package", "services/iris:image")) == {"docker", "dockerd", "strip"}
    assert set(needed("package", "base-image:base")) == {"docker", "dockerd"}
    assert needed("run", "bench:bench", "--", "--rounds", "1") == ["wrk", "h2load"]
    assert needed("--changed-since=HEAD", "package") == ["docker", "dockerd", "strip"]
    assert needed("bootstrap") == ["python3.11", "pip3", "python3.9"]
    assert needed("wheels") == ["python3.11", "pip3"]


def test_pants_tools_run_the_versions_tools_txt_pins_and_wheels_txt_hashes() -> None:
    config = tomllib.loads(Path("pants.toml").read_text())
    lines = Path("3rdparty/python/tools.txt").read_text().splitlines()
    pinned = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    for scope in ("pytest", "black", "ruff", "mypy", "dockerfile-parser"):
        for requirement in [config[scope]["version"], *config[scope].get("extra_requirements", [])]:
            assert requirement in pinned, f"[{scope}] {requirement} is not in 3rdparty/python/tools.txt"
    assert f"pip=={config['python']['pip_version']}" in pinned
    wheels = Path("3rdparty/python/wheels.txt").read_text()
    for requirement in pinned:
        name, version = requirement.split("==")
        wheel = rf"^{re.escape(name.replace('-', '_'))}=={re.escape(version)} --hash=sha256:[0-9a-f]{{64}}"
        assert re.search(wheel, wheels, flags=re.M | re.I), f"{requirement} has no hashed wheel in wheels.txt"
