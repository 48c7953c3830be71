"""A toy model service for testing the library without any real model."""

from collections.abc import Sequence
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from modelserving import LoadedModel, ModelService, save_model
from modelserving.formats.joblib import JOBLIB


class Row(BaseModel):
    x: float = Field(ge=-1000, le=1000, allow_inf_nan=False)


class ScaledValue(BaseModel):
    value: float


class Scaled(BaseModel):
    predictions: list[ScaledValue]
    version: str


class Scaler:
    """A picklable stand-in for an estimator: multiplies by a factor."""

    def __init__(self, factor: float) -> None:
        self.factor = factor


def scale(model: LoadedModel, rows: Sequence[Row]) -> Scaled:
    scaled = [ScaledValue(value=row.x * model.estimator.factor) for row in rows]
    return Scaled(predictions=scaled, version=model.card.version)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    save_model(
        Scaler(3.0),
        directory,
        name="toy",
        version="7.1",
        training_data=b"x\n1\n",
        metrics={"accuracy": 1.0},
        libraries=("joblib",),
        artifact_format=JOBLIB,
    )
    return directory


@pytest.fixture
def toy_service(model_dir: Path) -> ModelService[Row, Scaled]:
    return ModelService(
        name="toy",
        model_dir=model_dir,
        predict_path="/scale",
        item_type=Row,
        response_type=Scaled,
        predict=scale,
        examples=[Row(x=1.0)],
        artifact_format=JOBLIB,
    )
