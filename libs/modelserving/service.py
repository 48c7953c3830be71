"""What a model service declares (`ModelService`)."""

import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel

from modelserving.formats.artifacts import NPZ, ArtifactFormat, LoadedModel, ModelCard, ModelLoadError

Item = TypeVar("Item", bound=BaseModel)
Prediction = TypeVar("Prediction", bound=BaseModel)


@dataclass(frozen=True)
class ModelService(Generic[Item, Prediction]):
    """What a model service declares; everything else comes from the library."""

    name: str
    model_dir: Path
    predict_path: str
    item_type: type[Item]
    response_type: type[Prediction]
    predict: Callable[[LoadedModel, Sequence[Item]], Prediction]
    examples: Sequence[Item]
    title: str = ""
    description: str = ""
    predict_summary: str = "Predict for a batch of rows"
    tags: Sequence[str] = field(default_factory=tuple)
    artifact_format: ArtifactFormat = NPZ
    # Open Inference Protocol: also accept all features as one numeric tensor [N, features] under this name.
    v2_tensor_input: str | None = None
    # Run once on the verified model at start-up: the form `predict` gets it in (e.g. compiled for speed).
    prepare: Callable[[LoadedModel], LoadedModel] | None = None
    # The type clients get the model version as (`<name>_model_version`): `int` for a service whose
    # clients were promised a number (Titanic's date versions); the card's string otherwise.
    version_type: type[int] | type[str] = str

    def model_version(self, card: ModelCard) -> int | str:
        """The card's version as clients get it; ModelLoadError if it is not a `version_type`."""
        try:
            return self.version_type(card.version)
        except ValueError:
            kind = self.version_type.__name__
            raise ModelLoadError(
                f"{self.name} model versions are {kind}s; the card says {card.version!r}"
            ) from None


def prediction_list_field(response_type: type[BaseModel]) -> tuple[str, type[BaseModel]]:
    """The response field holding one prediction per row, e.g. `predictions: list[Prediction]`."""
    for name, info in response_type.model_fields.items():
        if typing.get_origin(info.annotation) is list:
            (element,) = typing.get_args(info.annotation)
            if isinstance(element, type) and issubclass(element, BaseModel):
                return name, element
    raise TypeError(f"{response_type.__name__} has no list-of-predictions field for v2 outputs")
