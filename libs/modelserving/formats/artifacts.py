"""Model artifacts and their model cards: saved by training, verified before loading.

A model directory holds `model_card.json` and the artifact it names. The card
records the artifact's sha256, and loading checks that hash *before* the bytes
are deserialised, so a swapped or damaged file is never executed.

Formats: `NPZ` (named NumPy arrays, nothing executed; the default) here;
pickled estimators in `modelserving.formats.joblib.JOBLIB`, imported only by the
services that serve them; a service may declare its own (diabetes: XGBoost's).
"""

import hashlib
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelserving.formats.reference import Reference

CARD_FILE = "model_card.json"


class ModelLoadError(Exception):
    """The model cannot be served; the message is one line saying why."""


class ModelCard(BaseModel):
    """What was trained, on what, how well, and with which libraries."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    created: datetime
    artifact: str = Field(min_length=1, description="File name of the artifact, next to the card.")
    artifact_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    artifact_format: str = Field(min_length=1, examples=["joblib"])
    training_data_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    metrics: dict[str, float]
    library_versions: dict[str, str]
    description: str = ""
    # What the model's inputs and scores looked like in training (formats/reference.py), which
    # serving counts live inputs against. None on cards written before it (#28): such a model
    # still loads and serves, without counting its inputs (a warning says so at load).
    reference: Reference | None = None


@dataclass(frozen=True)
class ArtifactFormat:
    """How a model becomes bytes and back. Loading never runs `load` on unverified bytes.

    `runs_code`: loading executes code the file names (a pickle). Such an artifact loads only
    under the exact versions of the libraries it was saved with: a pickle's meaning is the
    classes of one release, and another release may rebuild it into something else, silently.
    """

    name: str
    filename: str
    dump: Callable[[Any], bytes]
    load: Callable[[bytes], Any]
    runs_code: bool = False


def _npz_dump(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    named: dict[str, Any] = dict(arrays)
    np.savez_compressed(buffer, **named)
    return buffer.getvalue()


def _npz_load(payload: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


# Named NumPy arrays, never unpickled: loading runs no code from the file, and needs NumPy only.
NPZ = ArtifactFormat("npz", "model.npz", _npz_dump, _npz_load)


@dataclass(frozen=True)
class LoadedModel:
    """A verified, deserialised model and the card it came with."""

    estimator: Any
    card: ModelCard


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def installed_versions(*distributions: str) -> dict[str, str]:
    return {name: metadata.version(name) for name in distributions}


def save_model(
    estimator: Any,
    directory: Path,
    *,
    name: str,
    version: str,
    training_data: bytes,
    metrics: dict[str, float],
    libraries: tuple[str, ...],
    description: str = "",
    artifact_format: ArtifactFormat = NPZ,
    reference: Reference | None = None,
) -> ModelCard:
    """Write the artifact and a card describing it; return the card."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = artifact_format.dump(estimator)
    (directory / artifact_format.filename).write_bytes(payload)
    card = ModelCard(
        name=name,
        version=version,
        created=datetime.now(UTC).replace(microsecond=0),
        artifact=artifact_format.filename,
        artifact_format=artifact_format.name,
        artifact_sha256=sha256_of(payload),
        training_data_sha256=sha256_of(training_data),
        metrics=metrics,
        library_versions=installed_versions(*libraries),
        description=description,
        reference=reference,
    )
    write_card(directory, card)
    return card


def write_card(directory: Path, card: ModelCard) -> None:
    """Write `card` as `directory`'s model card (a card without a reference, as before #28,
    leaves the key out)."""
    text = card.model_dump_json(indent=2, exclude={"reference"} if card.reference is None else None)
    (directory / CARD_FILE).write_text(text + "\n")


def read_card(directory: Path) -> ModelCard:
    card_path = directory / CARD_FILE
    try:
        return ModelCard.model_validate_json(card_path.read_bytes())
    except FileNotFoundError:
        raise ModelLoadError(f"model card not found: {card_path}") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "card"
        raise ModelLoadError(f"invalid model card {card_path}: {where}: {first['msg']}") from None


def _check_library_versions(card: ModelCard, exact: bool) -> None:
    """The libraries the card names are installed, at the same major version (`exact`: the same
    version)."""
    for library, trained_with in card.library_versions.items():
        try:
            running = metadata.version(library)
        except metadata.PackageNotFoundError:
            raise ModelLoadError(f"model needs {library} {trained_with}, which is not installed") from None
        if exact and running != trained_with:
            raise ModelLoadError(
                f"model is a pickle saved with {library} {trained_with}: it loads only with that version, "
                f"not the installed {running} (retrain, or pin {library}=={trained_with})"
            )
        if running.split(".")[0] != trained_with.split(".")[0]:
            raise ModelLoadError(
                f"model was trained with {library} {trained_with}, incompatible with installed {running}"
            )


def load_model(
    directory: Path,
    *,
    expected_name: str | None = None,
    artifact_format: ArtifactFormat = NPZ,
) -> LoadedModel:
    """Verify the card and the artifact's sha256, then deserialise it; ModelLoadError otherwise."""
    card = read_card(directory)
    if expected_name is not None and card.name != expected_name:
        raise ModelLoadError(f"model card in {directory} is for {card.name!r}, not {expected_name!r}")
    if card.artifact_format != artifact_format.name:
        raise ModelLoadError(
            f"model card in {directory} is for a {card.artifact_format} artifact, not {artifact_format.name}"
        )
    _check_library_versions(card, exact=artifact_format.runs_code)
    artifact_path = directory / card.artifact
    try:
        payload = artifact_path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(f"model artifact not found: {artifact_path}") from None
    actual = sha256_of(payload)
    if actual != card.artifact_sha256:
        raise ModelLoadError(
            f"model artifact {artifact_path} has sha256 {actual}, but its card says {card.artifact_sha256}"
        )
    try:
        estimator = artifact_format.load(payload)
    except Exception as error:  # any failure to deserialise means the artifact is unusable
        raise ModelLoadError(
            f"model artifact {artifact_path} cannot be loaded: {type(error).__name__}: {error}"
        ) from None
    return LoadedModel(estimator=estimator, card=card)
