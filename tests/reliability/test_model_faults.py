"""A damaged or mismatched model stops the real server at start-up: exit code != 0, one log line, no port.

Each case copies Titanic's committed model directory, injects one fault, and
starts `python -m titanic.main` on it.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from modelserving.dev.testing import free_port, start_server
from modelserving.formats.artifacts import CARD_FILE, sha256_of
from titanic.main import MODEL_DIR


def card_of(model: Path) -> dict[str, object]:
    return dict(json.loads((model / CARD_FILE).read_text()))


def artifact_of(model: Path) -> Path:
    return model / str(card_of(model)["artifact"])


def edit_card(model: Path, **changes: object) -> None:
    (model / CARD_FILE).write_text(json.dumps({**card_of(model), **changes}))


def corrupt_keeping_the_hash(model: Path) -> None:
    """Bytes that are not an npz, with the card updated to match: only loading can tell."""
    artifact_of(model).write_bytes(b"PK\x03\x04 not really a zip")
    edit_card(model, artifact_sha256=sha256_of(artifact_of(model).read_bytes()))


FAULTS: dict[str, tuple[Callable[[Path], object], str]] = {
    "artifact missing": (lambda m: artifact_of(m).unlink(), "model artifact not found"),
    "artifact truncated": (
        lambda m: artifact_of(m).write_bytes(artifact_of(m).read_bytes()[:1000]),
        "has sha256",
    ),
    "artifact corrupted": (
        lambda m: artifact_of(m).write_bytes(bytes(b ^ 0xFF for b in artifact_of(m).read_bytes())),
        "has sha256",
    ),
    "artifact corrupted, hash updated": (corrupt_keeping_the_hash, "cannot be loaded"),
    "sha256 not matching the card": (lambda m: edit_card(m, artifact_sha256="0" * 64), "but its card says"),
    "card missing": (lambda m: (m / CARD_FILE).unlink(), "model card not found"),
    "card not JSON": (lambda m: (m / CARD_FILE).write_text("{not json"), "invalid model card"),
    "card without a version": (
        lambda m: (m / CARD_FILE).write_text(
            json.dumps({k: v for k, v in card_of(m).items() if k != "version"})
        ),
        "version: Field required",
    ),
    "card for another model": (lambda m: edit_card(m, name="iris"), "is for 'iris', not 'titanic'"),
    "another library major version": (
        lambda m: edit_card(m, library_versions={"numpy": "1.26.4"}),
        "trained with numpy 1.26.4, incompatible",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_faulty_model_stops_the_server_before_it_serves(
    tmp_path: Path, fault: str, record_property: Callable[[str, object], None]
) -> None:
    model = tmp_path / "model"
    shutil.copytree(MODEL_DIR, model)
    inject, expected = FAULTS[fault]
    inject(model)
    port = free_port()
    process = start_server("titanic.main", MODEL_DIR=str(model), PORT=str(port), LOG_LEVEL="INFO")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode not in (0, None)
    lines = stderr.strip().splitlines()
    record_property("exit", process.returncode)
    record_property("log", json.loads(lines[-1]).get("message", "")[:90] if lines else "")
    assert len(lines) == 1, stderr
    assert expected in lines[0], lines[0]
    with socket.socket() as probe:  # never served: nothing listened on its port
        assert probe.connect_ex(("127.0.0.1", port)) != 0
