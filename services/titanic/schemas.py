"""Request and response schemas of the Titanic service (the original service's contract)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from modelserving.service import PERSONAL


class Passenger(BaseModel):
    """One passenger record, as in the Titanic passenger list; unknown values may be null or absent."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "PassengerId": 1,
                    "Pclass": 3,
                    "Name": "Braund, Mr. Owen Harris",
                    "Sex": "male",
                    "Age": 22,
                    "SibSp": 1,
                    "Parch": 0,
                    "Ticket": "A/5 21171",
                    "Fare": 7.25,
                    "Cabin": None,
                    "Embarked": "S",
                }
            ]
        },
    )

    PassengerId: int = Field(ge=0, le=2**63 - 1, description="Caller's id, echoed as passenger_id.")
    Pclass: Literal[1, 2, 3] = Field(description="Ticket class: 1st, 2nd or 3rd.")
    Name: str = Field(
        min_length=1,
        max_length=200,
        description="Full name with title, e.g. 'Smith, Mrs. Jane'.",
        json_schema_extra=PERSONAL,
    )
    Sex: Literal["male", "female"]
    Age: float | None = Field(
        default=None, ge=0, le=120, allow_inf_nan=False, description="Years; null if unknown."
    )
    SibSp: int = Field(ge=0, le=20, description="Siblings and spouses aboard.")
    Parch: int = Field(ge=0, le=20, description="Parents and children aboard.")
    Ticket: str | None = Field(default=None, max_length=50, json_schema_extra=PERSONAL)
    Fare: float | None = Field(
        default=None, ge=0, le=10_000, allow_inf_nan=False, description="Ticket price in pounds."
    )
    Cabin: str | None = Field(default=None, max_length=50, description="Cabin number(s); null if unknown.")
    Embarked: Literal["C", "Q", "S"] | None = Field(
        default=None, description="Port: C = Cherbourg, Q = Queenstown, S = Southampton."
    )


class SurvivalPrediction(BaseModel):
    passenger_id: int = Field(examples=[1])
    survived: bool = Field(examples=[False], description="Whether the passenger is predicted to survive.")
    score: float = Field(
        ge=0, le=1, examples=[0.124], description="Predicted probability of survival, to 3 decimals."
    )


class PredictionMetadata(BaseModel):
    titanic_model_version: int = Field(
        examples=[20261205], description="The model's version: the date it was trained on, as YYYYMMDD."
    )


class SurvivalResponse(BaseModel):
    predictions: list[SurvivalPrediction]
    metadata: PredictionMetadata
