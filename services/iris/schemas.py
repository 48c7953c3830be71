"""Request and response schemas of the iris service, and the model's columns and classes."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Species = Literal["setosa", "versicolor", "virginica"]
# The model's classes in the order of its probabilities, and its input columns in order.
SPECIES: tuple[Species, ...] = ("setosa", "versicolor", "virginica")
Centimetres = Annotated[float, Field(gt=0, lt=100, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1)]


class Flower(BaseModel):
    """The four measurements of one iris flower, in centimetres (each above 0 and below 100)."""

    model_config = ConfigDict(extra="forbid")

    sepal_length_cm: Centimetres = Field(description="Sepal length.", examples=[5.1])
    sepal_width_cm: Centimetres = Field(description="Sepal width.", examples=[3.5])
    petal_length_cm: Centimetres = Field(description="Petal length.", examples=[1.4])
    petal_width_cm: Centimetres = Field(description="Petal width.", examples=[0.2])


# The model's input columns, in order: the fields of `Flower`, named nowhere else.
FEATURE_COLUMNS: tuple[str, ...] = tuple(Flower.model_fields)


class SpeciesPrediction(BaseModel):
    species: Species = Field(description="The most probable species.", examples=["setosa"])
    probabilities: dict[Species, Probability] = Field(
        description="Predicted probability of each species; they sum to 1.",
        examples=[{"setosa": 0.980287, "versicolor": 0.019712, "virginica": 0.000001}],
    )


class PredictionMetadata(BaseModel):
    model_version: str = Field(examples=["1.1.0"], description="Version of the model that predicted.")


class SpeciesResponse(BaseModel):
    predictions: list[SpeciesPrediction] = Field(description="One per flower, in request order.")
    metadata: PredictionMetadata
