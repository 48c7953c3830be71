"""Request and response schemas of the diabetes service, in real units, and the model's columns."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Measurement = Annotated[float, Field(allow_inf_nan=False)]


class Patient(BaseModel):
    """One patient's baseline measurements, named as in the diabetes data set (Efron et al., 2004).

    Each value must lie in a range plausible for a living adult, wider than the
    training data's; predictions far outside the training data's ranges
    (README) are extrapolations.
    """

    model_config = ConfigDict(extra="forbid")

    age: Measurement = Field(ge=18, le=120, description="Age in years (adults only).", examples=[59])
    sex: Literal[1, 2] = Field(description="Sex, coded 1 or 2 as in the data set.", examples=[2])
    bmi: Measurement = Field(ge=10, le=80, description="Body mass index, kg/m².", examples=[32.1])
    bp: Measurement = Field(ge=30, le=250, description="Average blood pressure, mm Hg.", examples=[101.0])
    s1: Measurement = Field(ge=50, le=600, description="tc: total serum cholesterol, mg/dL.", examples=[157])
    s2: Measurement = Field(ge=5, le=500, description="ldl: LDL cholesterol, mg/dL.", examples=[93.2])
    s3: Measurement = Field(ge=5, le=200, description="hdl: HDL cholesterol, mg/dL.", examples=[38])
    s4: Measurement = Field(ge=1, le=30, description="tch: total cholesterol / HDL.", examples=[4.0])
    s5: Measurement = Field(ge=1, le=9, description="ltg: ln(serum triglycerides, mg/dL).", examples=[4.8598])
    s6: Measurement = Field(ge=20, le=700, description="glu: blood sugar level, mg/dL.", examples=[87])


# The model's input columns, in order: the fields of `Patient`, named nowhere else.
FEATURE_COLUMNS: tuple[str, ...] = tuple(Patient.model_fields)


class ProgressionPrediction(BaseModel):
    progression: float = Field(
        examples=[208.02],
        description="Predicted disease progression one year after baseline, on the data set's scale"
        " (25 to 346 in training).",
    )


class PredictionMetadata(BaseModel):
    model_version: str = Field(examples=["1.1.0"], description="Version of the model that predicted.")


class ProgressionResponse(BaseModel):
    predictions: list[ProgressionPrediction] = Field(description="One per patient, in request order.")
    metadata: PredictionMetadata
