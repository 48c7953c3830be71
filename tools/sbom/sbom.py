"""A CycloneDX SBOM of an image: every Debian package and Python distribution in it, by version and sha256.

    sbom.py --rootfs base-image/rootfs.tar --image modelserving-base --output sbom.cdx.json
    sbom.py --rootfs base-image/rootfs.tar --pex services.titanic/serve.pex \
        --wheels 3rdparty/python/wheels.txt --image modelserving-titanic --output sbom.cdx.json

Debian packages come from the root filesystem's dpkg status (/var/lib/dpkg/status.d, one
file per package, as build-rootfs writes it), each with the sha256 of its .deb (from the
package manifest next to it). Python distributions come from the PEX the image installs
into its venv, each with the sha256 of its wheel as 3rdparty/python/wheels.txt records it
(the hash pip checked it against). Run by Pants (`base-image:sbom`, `services/<name>:sbom`),
so the SBOM is built from the same inputs as the image and goes into it.
"""

from __future__ import annotations

import argparse
import json
import tarfile
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cyclonedx.model import HashAlgorithm, HashType
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from packaging.utils import canonicalize_name, parse_wheel_filename

STATUS_DIR = "var/lib/dpkg/status.d/"
MANIFEST = "usr/share/base-image/packages.manifest"
DISTRO = "debian-12"


@dataclass(frozen=True)
class Package:
    """One piece of software in the image: a Debian package (`deb`) or a Python distribution (`pypi`)."""

    kind: str
    name: str
    version: str
    sha256: str
    arch: str = ""

    def component(self) -> Component:
        qualifiers = {"arch": self.arch, "distro": DISTRO} if self.kind == "deb" else {}
        namespace = "debian" if self.kind == "deb" else None
        purl = PackageURL(self.kind, namespace, self.name, self.version, qualifiers or None)
        return Component(
            name=self.name,
            version=self.version,
            type=ComponentType.LIBRARY,
            purl=purl,
            bom_ref=purl.to_string(),
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=self.sha256)],
        )


def control_fields(text: str) -> dict[str, str]:
    """The fields of one dpkg control paragraph (continuation lines dropped)."""
    fields = {}
    for line in text.splitlines():
        if line and not line[0].isspace() and ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def debian_packages(rootfs: Path) -> Iterator[Package]:
    """Every package dpkg's status in the root filesystem lists, with its .deb's sha256."""
    with tarfile.open(rootfs) as tar:
        files = {member.name.removeprefix("./"): member for member in tar.getmembers() if member.isfile()}

        def read(name: str) -> str:
            extracted = tar.extractfile(files[name])
            assert extracted is not None
            return extracted.read().decode()

        sha256 = {}
        for line in read(MANIFEST).splitlines():
            name, version, _, digest = line.split("\t")
            sha256[(name, version)] = digest
        for path in sorted(files):
            if path.startswith(STATUS_DIR) and not path.endswith(".md5sums"):
                fields = control_fields(read(path))
                key = (fields["Package"], fields["Version"])
                if key not in sha256:
                    raise SystemExit(f"sbom: {key[0]}={key[1]} is in dpkg's status but not in {MANIFEST}")
                yield Package("deb", key[0], key[1], sha256[key], fields["Architecture"])


def wheel_hashes(wheels_txt: Path) -> dict[str, str]:
    """sha256 by wheel file name, from `name==version --hash=sha256:...  # file name` lines."""
    hashes = {}
    for line in wheels_txt.read_text().splitlines():
        if line and not line.startswith("#"):
            requirement, _, file_name = line.partition("#")
            hashes[file_name.strip()] = requirement.split("--hash=sha256:")[1].strip()
    return hashes


def python_distributions(pex: Path, wheels_txt: Path) -> Iterator[Package]:
    """Every distribution the PEX holds (what `pex venv` installs), with its wheel's recorded sha256."""
    with zipfile.ZipFile(pex) as archive:
        wheels = json.loads(archive.read("PEX-INFO"))["distributions"]
    hashes = wheel_hashes(wheels_txt)
    for wheel in sorted(wheels):
        if wheel not in hashes:
            raise SystemExit(f"sbom: {wheel} is in {pex} but not in {wheels_txt}")
        name, version, _, _ = parse_wheel_filename(wheel)
        yield Package("pypi", canonicalize_name(name), str(version), hashes[wheel])


def bom(image: str, packages: list[Package]) -> Bom:
    """The image as the BOM's subject, depending on every package; serial number derived from the content."""
    components = [package.component() for package in packages]
    content = json.dumps([[p.kind, p.name, p.version, p.sha256] for p in packages])
    document = Bom(components=components, serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"{image}\n{content}"))
    subject = Component(name=image, type=ComponentType.CONTAINER, bom_ref=image)
    document.metadata.component = subject
    document.register_dependency(subject, components)
    return document


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rootfs", type=Path, required=True, help="the base image's root filesystem (tar)")
    parser.add_argument("--pex", type=Path, help="the PEX the image installs into its venv")
    parser.add_argument("--wheels", type=Path, help="3rdparty/python/wheels.txt (with --pex)")
    parser.add_argument("--image", required=True, help="the image's name, e.g. modelserving-titanic")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    if (args.pex is None) != (args.wheels is None):
        parser.error("--pex and --wheels go together")
    packages = list(debian_packages(args.rootfs))
    if args.pex:
        packages += python_distributions(args.pex, args.wheels)
    args.output.write_text(JsonV1Dot6(bom(args.image, packages)).output_as_string(indent=2) + "\n")


if __name__ == "__main__":
    main()
