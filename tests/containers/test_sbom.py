"""Each image's SBOM lists exactly what the image holds, by version and sha256 (issue #14).

The SBOM Pants wrote next to the build (the adhoc_tool's output, what export-codegen puts
in dist/) must be the one inside the image, valid CycloneDX 1.6, and agree with the image's
contents read back from a container: every Debian package dpkg's status lists (name and
version), every Python distribution in the venv; each with the sha256 of its .deb (the
image's package manifest) or of its wheel (3rdparty/python/wheels.txt).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from containers.engine import built_image, docker_client
from containers.harness import SERVICES
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packaging.utils import canonicalize_name

# Run by the image's own Python: what the image holds, as JSON.
READ_IMAGE = """
import json, pathlib, sys
status = pathlib.Path("/var/lib/dpkg/status.d")
def fields(text):
    return dict(line.split(": ", 1) for line in text.splitlines() if line[:1].strip() and ": " in line)
debs = [fields(p.read_text()) for p in sorted(status.iterdir()) if p.suffix != ".md5sums"]
manifest = pathlib.Path("/usr/share/base-image/packages.manifest").read_text()
manifest = [line.split("\\t") for line in manifest.splitlines()]
metadata = sorted(pathlib.Path("/app/venv/lib").glob("python3*/site-packages/*.dist-info/METADATA"))
dists = [fields(p.read_text().split("\\n\\n")[0]) for p in metadata]
print(json.dumps({
    "sbom": pathlib.Path(sys.argv[1]).read_text(),
    "debs": [[d["Package"], d["Version"], d["Status"]] for d in debs],
    "deb_sha256": {f"{name}={version}": sha for name, version, _, sha in manifest},
    "dists": [[d["Name"], d["Version"]] for d in dists],
}))
"""


def wheel_sha256() -> dict[str, str]:
    """`name==version` (name canonical) -> sha256, from 3rdparty/python/wheels.txt."""
    found = {}
    for line in Path("3rdparty/python/wheels.txt").read_text().splitlines():
        match = re.match(r"([^=\s]+)==(\S+) --hash=sha256:([0-9a-f]{64})", line)
        if match:
            found[f"{canonicalize_name(match[1])}=={match[2]}"] = match[3]
    return found


def image_contents(name: str, image_name: str) -> dict[str, Any]:
    docker = docker_client()
    script = ["-c", READ_IMAGE, f"/usr/share/sbom/{image_name}.cdx.json"]
    output = subprocess.run(
        [
            docker,
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/usr/bin/python3.11",
            built_image(name),
            *script,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    contents: dict[str, Any] = json.loads(output)
    return contents


@pytest.mark.parametrize("name", ["base", *sorted(SERVICES)])
def test_sbom_in_the_image_and_next_to_the_build_lists_what_the_image_holds(name: str) -> None:
    image_name = f"modelserving-{name}"
    built_sbom = Path("base-image/sbom.cdx.json" if name == "base" else f"services/{name}/sbom.cdx.json")
    held = image_contents(name, image_name)
    assert held["sbom"] == built_sbom.read_text(), "the image carries the SBOM Pants wrote"
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(held["sbom"]) is None

    sbom = json.loads(held["sbom"])
    assert sbom["metadata"]["component"]["name"] == image_name
    components = sbom["components"]
    for component in components:
        (digest,) = component["hashes"]
        assert digest["alg"] == "SHA-256" and re.fullmatch("[0-9a-f]{64}", digest["content"]), component
    debs = {c["name"]: c for c in components if c["purl"].startswith("pkg:deb/debian/")}
    dists = {c["name"]: c for c in components if c["purl"].startswith("pkg:pypi/")}
    assert len(debs) + len(dists) == len(components)

    assert {(n, v) for n, v, _ in held["debs"]} == {(c["name"], c["version"]) for c in debs.values()}
    assert {status for _, _, status in held["debs"]} == {"install ok installed"}
    for deb in debs.values():
        assert deb["hashes"][0]["content"] == held["deb_sha256"][f"{deb['name']}={deb['version']}"]
    assert {"python3.11", "libc6", "ca-certificates"} <= debs.keys()

    in_venv = {(str(canonicalize_name(n)), v) for n, v in held["dists"]}
    assert in_venv == {(c["name"], c["version"]) for c in dists.values()}
    hashes = wheel_sha256()
    for dist in dists.values():
        assert dist["hashes"][0]["content"] == hashes[f"{dist['name']}=={dist['version']}"], dist["name"]
    if name != "base":
        assert {"fastapi", "uvicorn", "numpy"} <= dists.keys()
