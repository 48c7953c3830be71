"""Each image's extension modules are stripped, every one still imports, and each image keeps
within its size budget (issue #27).

`tools/strip-pex` strips the extension modules of a service's PEX before its image installs
it, and leaves the libraries wheels vendor (`<dist>.libs/`) alone. A probe runs in the image,
under the Pod's flags, with the image's venv Python: it lists each ELF file of the venv with
the sections it still has, then imports every extension module, which loads the vendored
libraries it links.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from containers.engine import budget_megabytes, built_image, docker_client, image_megabytes
from containers.harness import POD_FLAGS, SERVICES

# Run by the image's venv Python; prints {"sections": {file: [names]}, "failed": {module: error}}.
PROBE = r"""
import importlib, json, pathlib, struct, sys

site = next(pathlib.Path("/app/venv/lib").glob("python3*/site-packages"))


def section_names(path):
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:  # ELF, 64-bit
        return None
    offset, = struct.unpack_from("<Q", data, 0x28)
    size, count, names_index = struct.unpack_from("<HHH", data, 0x3A)
    headers = [data[offset + i * size : offset + (i + 1) * size] for i in range(count)]
    names_at, = struct.unpack_from("<Q", headers[names_index], 0x18)
    names = []
    for header in headers:
        start = names_at + struct.unpack_from("<I", header, 0)[0]
        names.append(data[start : data.index(b"\0", start)].decode())
    return names


sections, failed = {}, {}
for path in sorted(site.rglob("*.so*")):
    names = section_names(path)
    if names is None:
        continue
    relative = path.relative_to(site)
    sections[str(relative)] = names
    if relative.parts[0].endswith(".libs") or not path.name.endswith(".so"):
        continue
    module = ".".join((*relative.parts[:-1], path.name.split(".")[0]))
    try:
        importlib.import_module(module)
    except Exception as error:
        failed[module] = f"{error.__class__.__name__}: {error}"
print(json.dumps({"sections": sections, "failed": failed}))
"""


def probe(name: str) -> dict[str, Any]:
    command = [docker_client(), "run", "--rm", *POD_FLAGS, "--entrypoint", "/app/venv/bin/python"]
    command += [built_image(name), "-c", PROBE]
    run = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0 and run.stdout, run.stderr[-4000:]
    report: dict[str, Any] = json.loads(run.stdout)
    return report


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_shared_object_is_stripped_and_every_extension_module_imports(name: str) -> None:
    report = probe(name)
    sections = report["sections"]
    modules = [path for path in sections if not path.split("/")[0].endswith(".libs")]
    print(f"\n{name}: {len(sections)} shared objects, {len(modules)} of them extension modules")
    assert any(path.startswith("uvloop/loop.") for path in sections), "no uvloop: the probe looked elsewhere"
    unstripped = {
        path: [section for section in sections[path] if section == ".symtab" or section.startswith(".debug")]
        for path in modules
    }
    assert {path: left for path, left in unstripped.items() if left} == {}
    assert report["failed"] == {}


@pytest.mark.parametrize("name", ["base", *sorted(SERVICES)])
def test_each_image_keeps_within_its_size_budget(name: str) -> None:
    megabytes = image_megabytes(built_image(name))
    print(f"\n{name}: {megabytes:.1f} MB (budget {budget_megabytes(name)} MB)")
    assert megabytes <= budget_megabytes(name)
