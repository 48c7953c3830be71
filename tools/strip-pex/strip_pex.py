"""A service's PEX with its shared objects stripped: what the image installs (issue #27).

Wheels ship their extension modules and vendored libraries with symbol tables and, some,
debug information that serving never reads: uvloop's module alone carries 12 MB of DWARF.
Each extension module in the PEX goes through binutils' `strip --strip-unneeded`, as Debian
strips every shared library it packages: the dynamic symbols that loading and linking use
stay. The libraries a wheel vendors (`<dist>.libs/`, grafted by auditwheel) are left as they
are: patchelf rewrote their layout, and strip makes them unloadable ("ELF load command
address/offset not page-aligned", numpy's OpenBLAS).
Every other member is copied as it is, in order, with the PEX's own shebang line in front.
`tests/containers/test_stripped.py` checks that every module still imports in the image.
The PEX-INFO still names the original wheels' fingerprints, so the result is for the image's
fresh install only: on a machine whose PEX cache already holds those wheels, it would run them.

    strip_pex.py IN.pex OUT.pex

Run by each service's `:serve-stripped` target (`build-support/macros.py`), with `strip` from
the system (`3rdparty/system/tools.txt`); prints what each file weighed before and after.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
ZIP_LOCAL_HEADER = b"PK\x03\x04"


def stripped(content: bytes) -> bytes:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "object"
        path.write_bytes(content)
        subprocess.run(["strip", "--strip-unneeded", str(path)], check=True)
        return path.read_bytes()


def vendored(name: str) -> bool:
    """Whether a PEX member is a library a wheel vendors: `.deps/<wheel>/<dist>.libs/...`."""
    return any(part.endswith(".libs") for part in name.split("/")[2:-1])


def strip_pex(source: Path, target: Path) -> list[tuple[str, int, int]]:
    """Write `source` with its extension modules stripped to `target`; each one's name and sizes."""
    data = source.read_bytes()
    shebang = data[: data.index(ZIP_LOCAL_HEADER)]
    changes = []
    with zipfile.ZipFile(source) as original, target.open("wb") as out:
        out.write(shebang)
        with zipfile.ZipFile(out, "w") as result:
            for member in original.infolist():
                content = original.read(member)
                if content.startswith(ELF_MAGIC) and not vendored(member.filename):
                    smaller = stripped(content)
                    changes.append((member.filename, len(content), len(smaller)))
                    content = smaller
                result.writestr(member, content, compress_type=member.compress_type)
    target.chmod(source.stat().st_mode)
    return changes


def main() -> None:
    source, target = (Path(argument) for argument in sys.argv[1:3])
    changes = strip_pex(source, target)
    for name, before, after in sorted(changes, key=lambda change: change[2] - change[1]):
        print(f"{before / 1e6:8.2f} -> {after / 1e6:8.2f} MB  {name.split('/', 2)[-1]}")
    before, after = sum(change[1] for change in changes), sum(change[2] for change in changes)
    print(f"{len(changes)} extension modules: {before / 1e6:.1f} -> {after / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
