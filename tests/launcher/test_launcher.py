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


def warm_cache(tmp_path: Path) -> Path:
    """A bootstrapped cache whose Pants entry points are fakes that print what they were given."""
    version = tomllib.loads(Path("pants.toml").read_text())["GLOBAL"]["pants_version"]
    cache = tmp_path / "cache" / "pants-bootstrap" / f"pants-{version}-pex-2.1.137-v2"
    (cache / "pants" / "pants" / "bin").mkdir(parents=True)
    report = (
        'echo "$(basename $0) args=$*"\n'
        'echo "pex=$PANTS_PEX_CLI_URL_TEMPLATE known=$PANTS_PEX_CLI_KNOWN_VERSIONS"\n'
        'echo "ca=$PANTS_CA_CERTS_PATH server=$_PANTS_SERVER_EXE"\n'
    )
    executable(cache / "pants-python", "#!/bin/sh\n" + report)
    executable(cache / "pants" / "pants" / "bin" / "native_client", "#!/bin/sh\n" + report)
    (cache / "env").write_text(
        "ca_bundle=/etc/ssl/certs/ca-certificates.crt\n"
        f"PANTS_PEX_CLI_URL_TEMPLATE=file://{cache}/pex\n"
        "PANTS_PEX_CLI_KNOWN_VERSIONS='[\"v2.1.137|linux_x86_64|abc|123\"]'\n"
    )
    return cache


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "PANTS_CA_CERTS_PATH" and not key.startswith(("PANTS_PEX", "_PANTS"))
    }
    return {**env, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", **extra}


def test_warm_start_runs_the_native_client_with_the_pex_tool_and_ca_bundle(tmp_path: Path) -> None:
    cache = warm_cache(tmp_path)
    started = time.perf_counter()
    result = run_launcher(clean_env(tmp_path), "test", "::")
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "native_client args=test ::",
        f'pex=file://{cache}/pex known=["v2.1.137|linux_x86_64|abc|123"]',
        f"ca=/etc/ssl/certs/ca-certificates.crt server={cache}/pants-python",
    ]
    assert result.stderr == ""  # nothing was bootstrapped
    print(f"launcher overhead with a warm cache: {elapsed * 1000:.1f} ms")


def test_native_client_can_be_turned_off(tmp_path: Path) -> None:
    warm_cache(tmp_path)
    result = run_launcher(clean_env(tmp_path, PANTS_NO_NATIVE_CLIENT="1"), "--version")
    assert result.stdout.splitlines()[0] == "pants-python args=--version"
