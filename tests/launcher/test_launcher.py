"""The ./pants launcher: defers to an official launcher, and starts fast from its cache."""

import os
import stat
import subprocess
import time
import tomllib
from pathlib import Path

LAUNCHER = Path("pants").resolve()


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def run_launcher(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LAUNCHER), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_defers_to_an_official_launcher_on_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(bin_dir / "pants", '#!/bin/sh\necho "official launcher: $*"\n')
    result = run_launcher({**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "official launcher: --version\n"


def test_warm_start_runs_the_cached_pants_with_the_pex_tool_and_ca_bundle(tmp_path: Path) -> None:
    version = tomllib.loads(Path("pants.toml").read_text())["GLOBAL"]["pants_version"]
    cache = tmp_path / "cache" / "pants-bootstrap" / f"pants-{version}-pex-2.1.137"
    (cache / "pants" / "bin").mkdir(parents=True)
    (cache / "pants" / "bin" / "pants").write_text("")
    fake_python = executable(
        tmp_path / "python3.9",
        "#!/bin/sh\n"
        'echo "script=$1 args=$2 pythonpath=$PYTHONPATH"\n'
        'echo "pex=$PANTS_PEX_CLI_URL_TEMPLATE known=$PANTS_PEX_CLI_KNOWN_VERSIONS"\n'
        'echo "ca=$PANTS_CA_CERTS_PATH"\n',
    )
    (cache / "env").write_text(
        f"python39={fake_python}\nca_bundle=/etc/ssl/certs/ca-certificates.crt\n"
        f"PANTS_PEX_CLI_URL_TEMPLATE=file://{cache}/pex\n"
        "PANTS_PEX_CLI_KNOWN_VERSIONS='[\"v2.1.137|linux_x86_64|abc|123\"]'\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "PANTS_CA_CERTS_PATH" and not key.startswith("PANTS_PEX")
    }
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["PATH"] = "/usr/bin:/bin"  # no official launcher
    started = time.perf_counter()
    result = run_launcher(env, "--version")
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"script={cache}/pants/bin/pants args=--version pythonpath={cache}/pants"
    assert lines[1] == f'pex=file://{cache}/pex known=["v2.1.137|linux_x86_64|abc|123"]'
    assert lines[2] == "ca=/etc/ssl/certs/ca-certificates.crt"
    assert result.stderr == ""  # nothing was bootstrapped
    print(f"launcher overhead with a warm cache: {elapsed * 1000:.1f} ms")
