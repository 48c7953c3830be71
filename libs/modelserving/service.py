"""What a model service declares (`ModelService`) and its per-process state (`Runtime`)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel

from modelserving.artifacts import JOBLIB, ArtifactFormat, LoadedModel

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
    artifact_format: ArtifactFormat = JOBLIB
    # Open Inference Protocol: also accept all features as one numeric tensor [N, features] under this name.
    v2_tensor_input: str | None = None
    # Run once on the verified model at start-up: the form `predict` gets it in (e.g. compiled for speed).
    prepare: Callable[[LoadedModel], LoadedModel] | None = None


@dataclass
class Runtime:
    """Per-process state: the loaded model and whether traffic should come here."""

    booted_at: datetime
    model: LoadedModel | None = None
    ready: bool = False
    draining: bool = False
