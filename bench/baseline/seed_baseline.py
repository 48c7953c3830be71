"""The baseline: Titanic served the way the original one-file service did, for the benchmark.

Deliberately not how services here are written. Per request it turns the
passengers into dicts and a pandas DataFrame, engineers features in pandas (name
length, has-cabin, is-female; text columns dropped; columns reordered) and asks a
100-tree `RandomForestRegressor` for a score, thresholded at 0.5, in a plain
synchronous FastAPI route. The forest is fitted at start-up on the same training
data (the original loaded a pickle of the same model; fitting instead keeps a
second artifact out of the repo). Run by bench/benchmark.py as production runs
apps here: one uvicorn process per worker, access log on.

    PORT=8000 WORKERS=1 python -m baseline.seed_baseline
"""

from __future__ import annotations

import io
import os
import pkgutil

import pandas as pd
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sklearn.ensemble import RandomForestRegressor

COLUMNS = ["Pclass", "Age", "SibSp", "Parch", "Fare", "NameLength", "HasCabin", "IsFemale"]


class Passenger(BaseModel):
    PassengerId: int
    Pclass: int
    Name: str
    Sex: str
    Age: float | None = None
    SibSp: int
    Parch: int
    Ticket: str | None = None
    Fare: float | None = None
    Cabin: str | None = None
    Embarked: str | None = None


def engineer(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["NameLength"] = frame["Name"].str.len()
    frame["HasCabin"] = frame["Cabin"].notna().astype(int)
    frame["IsFemale"] = (frame["Sex"] == "female").astype(int)
    frame = frame.drop(columns=["Name", "Sex", "Ticket", "Cabin", "Embarked", "PassengerId"], errors="ignore")
    return frame[COLUMNS].fillna(-1)


def fitted_forest() -> RandomForestRegressor:
    data = pkgutil.get_data("titanic", "data/train.csv")
    assert data is not None, "titanic/data/train.csv is missing from the package"
    train = pd.read_csv(io.BytesIO(data))
    return RandomForestRegressor(n_estimators=100, random_state=0).fit(engineer(train), train["Survived"])


app = FastAPI(title="Titanic baseline (seed style)")
model = fitted_forest()


@app.get("/health_check/load_balancer")
def load_balancer_check() -> dict[str, str]:
    return {}


@app.get("/readyz")
def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.post("/predict_survival_by_passengers")
def predict(passengers: list[Passenger]) -> dict[str, object]:
    frame = pd.DataFrame([passenger.model_dump() for passenger in passengers])
    scores = model.predict(engineer(frame))
    return {
        "predictions": [
            {"passenger_id": p.PassengerId, "survived": int(score > 0.5)}
            for p, score in zip(passengers, scores, strict=True)
        ]
    }


def main() -> None:
    port, workers = int(os.environ.get("PORT", "8000")), int(os.environ.get("WORKERS", "1"))
    uvicorn.run("baseline.seed_baseline:app", host="127.0.0.1", port=port, workers=workers, log_level="info")


if __name__ == "__main__":
    main()
