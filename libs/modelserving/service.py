"""What a model service declares (`ModelService`)."""

import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from modelserving.formats.artifacts import NPZ, ArtifactFormat, LoadedModel, ModelCard
from modelserving.outputs import ModelOutput
from modelserving.settings import Settings

Item = TypeVar("Item", bound=BaseModel)
Prediction = TypeVar("Prediction", bound=BaseModel)

# Marks a field of a row schema as personal data: `Name: str = Field(json_schema_extra=PERSONAL)`.
# Payload logging (runtime/payloads.py) hashes it with a key, or leaves it out; the OpenAPI
# document shows it to clients as `"x-personal": true`.
PERSONAL: dict[str, Any] = {"x-personal": True}  # never changed: every marked field shares it


@dataclass(frozen=True)
class HealthKeys:
    """Keys a service adds to `GET /health_check`, after `health` and `booted_at`: an older
    contract's, kept for the monitors that read them (Titanic's original service's, for one).

    `fields` types them for the OpenAPI document, as `pydantic.create_model` takes fields
    (name: (type, FieldInfo)); `values(settings, card)` gives them, `card` None until the model
    is loaded. It is also called once on the loaded card at start-up, so a card it cannot
    report (ModelLoadError) stops the worker before it serves.
    """

    fields: Mapping[str, tuple[Any, Any]]
    values: Callable[[Settings, ModelCard | None], Mapping[str, Any]]


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
    # Keys this service adds to GET /health_check, for monitors written against its own past.
    health_keys: HealthKeys | None = None
    # Requests of up to this many rows that come alone and find the model idle are predicted on
    # the event loop, saving the hand-off to the inference thread (~0.1 ms). Only for a `predict`
    # that cannot hang and answers a few rows in well under INLINE_BUDGET_SECONDS (NumPy runtimes).
    predict_inline_rows: int = 0
    # The output two versions of the model are compared by (modelserving.outputs): every served
    # prediction is counted into its bin, by model version, for canary analysis and shadows.
    output: ModelOutput | None = None


def prediction_list_field(response_type: type[BaseModel]) -> tuple[str, type[BaseModel]]:
    """The response field holding one prediction per row, e.g. `predictions: list[Prediction]`."""
    for name, info in response_type.model_fields.items():
        if typing.get_origin(info.annotation) is list:
            (element,) = typing.get_args(info.annotation)
            if isinstance(element, type) and issubclass(element, BaseModel):
                return name, element
    raise TypeError(f"{response_type.__name__} has no list-of-predictions field for v2 outputs")


def personal_fields(item_type: type[BaseModel]) -> tuple[str, ...]:
    """The fields of a row schema marked PERSONAL, in their declared order."""
    return tuple(
        name
        for name, info in item_type.model_fields.items()
        if isinstance(info.json_schema_extra, Mapping) and info.json_schema_extra.get("x-personal") is True
    )
