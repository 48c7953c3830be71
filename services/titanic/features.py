"""Feature engineering and estimator for the Titanic survival model.

`build_pipeline` returns one scikit-learn Pipeline that takes the raw passenger
columns in `FEATURE_COLUMNS` (gaps allowed) and predicts `Survived`, so a fitted
pipeline can be pickled with joblib and served on single records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from os import PathLike
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from modelserving.trees import compile_gradient_boosting, sigmoid

FEATURE_COLUMNS: tuple[str, ...] = (
    "Pclass",
    "Name",
    "Sex",
    "Age",
    "SibSp",
    "Parch",
    "Ticket",
    "Fare",
    "Cabin",
    "Embarked",
)
TARGET_COLUMN = "Survived"

NUMERIC_INPUTS: tuple[str, ...] = ("Pclass", "Age", "SibSp", "Parch", "Fare")
NUMERIC_FEATURES: tuple[str, ...] = ("Pclass", "Age", "Fare", "FamilySize", "IsAlone", "CabinKnown")
CATEGORICAL_FEATURES: tuple[str, ...] = ("Sex", "Title", "Embarked")

_TITLE_ALIASES = {"Mlle": "Miss", "Ms": "Miss", "Mme": "Mrs"}
_COMMON_TITLES = frozenset({"Mr", "Mrs", "Miss", "Master"})


def _title(name: object) -> str:
    """'Braund, Mr. Owen Harris' -> 'Mr'; anything unusual -> 'Rare'."""
    if not isinstance(name, str) or "," not in name:
        return "Rare"
    title = name.split(",", 1)[1].split(".", 1)[0].strip()
    title = _TITLE_ALIASES.get(title, title)
    return title if title in _COMMON_TITLES else "Rare"


def _numbers(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {
        column: pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        for column in NUMERIC_INPUTS
    }


def _categories(frame: pd.DataFrame, titles: np.ndarray) -> np.ndarray:
    sex = frame["Sex"].to_numpy(dtype=object)
    embarked = frame["Embarked"].to_numpy(dtype=object)
    table = np.column_stack([sex, titles, embarked])
    return np.where(pd.isna(table), "missing", table)


class PassengerFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # sklearn is untyped
    """Raw passenger columns -> numeric feature matrix.

    Numeric gaps are filled with medians seen in `fit`; a missing Age first
    falls back to the median age of the passenger's title (Master, Miss, ...),
    a strong proxy for age. Sex, title and port are one-hot encoded.
    """

    def fit(self, frame: pd.DataFrame, y: object = None) -> PassengerFeatures:
        numbers = _numbers(frame)
        titles = frame["Name"].map(_title).to_numpy(dtype=object)
        self.medians_ = {name: float(np.nanmedian(v)) for name, v in numbers.items()}
        by_title = pd.Series(numbers["Age"]).groupby(titles).median().dropna()
        self.age_by_title_ = {str(t): float(age) for t, age in by_title.items()}
        self.encoder_ = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        self.encoder_.fit(_categories(frame, titles))
        return self

    # Plain numpy rather than pandas/ColumnTransformer: their per-call overhead
    # made single-row predictions several times slower.
    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        numbers = _numbers(frame)
        titles = frame["Name"].map(_title).to_numpy(dtype=object)
        title_age = np.array([self.age_by_title_.get(t, np.nan) for t in titles])
        numbers["Age"] = np.where(np.isnan(numbers["Age"]), title_age, numbers["Age"])
        filled = {name: np.where(np.isnan(v), self.medians_[name], v) for name, v in numbers.items()}
        family_size = filled["SibSp"] + filled["Parch"] + 1
        numeric = np.column_stack(
            [
                filled["Pclass"],
                filled["Age"],
                filled["Fare"],
                family_size,
                family_size == 1,
                frame["Cabin"].notna().to_numpy(),
            ]
        )
        categorical = self.encoder_.transform(_categories(frame, titles))
        return np.hstack([numeric, categorical])

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        encoded = self.encoder_.get_feature_names_out(CATEGORICAL_FEATURES)
        return np.concatenate([np.asarray(NUMERIC_FEATURES, dtype=object), encoded])


class SurvivalScorer:
    """The fitted pipeline in the form serving needs: passengers -> survival probability.

    The same numbers as `pipeline.predict_proba(frame)[:, 1]` (tests compare them on
    every training passenger), computed from the passengers' attributes with plain
    numpy and the boosted trees prepared by modelserving.trees: no DataFrame and no
    scikit-learn input checks per call, which cost milliseconds per request.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.features: PassengerFeatures = pipeline.named_steps["features"]
        self.trees = compile_gradient_boosting(pipeline.named_steps["model"])
        categories = self.features.encoder_.categories_
        offsets = np.cumsum([0, *(len(values) for values in categories)])
        # (Sex | Title | Embarked value) -> its column in the one-hot block, per categorical feature.
        self.one_hot = [
            {value: int(offset) + i for i, value in enumerate(values)}
            for values, offset in zip(categories, offsets, strict=False)
        ]
        self.width = len(NUMERIC_FEATURES) + int(offsets[-1])

    def matrix(self, passengers: Sequence[Any]) -> np.ndarray:
        """What `PassengerFeatures.transform` makes of the same passengers."""
        titles = [_title(passenger.Name) for passenger in passengers]
        number = {
            name: np.array([_number(getattr(passenger, name)) for passenger in passengers], dtype=float)
            for name in NUMERIC_INPUTS
        }
        title_age = np.array(
            [self.features.age_by_title_.get(title, math.nan) for title in titles], dtype=float
        )
        number["Age"] = np.where(np.isnan(number["Age"]), title_age, number["Age"])
        filled = {name: np.where(np.isnan(v), self.features.medians_[name], v) for name, v in number.items()}
        family_size = filled["SibSp"] + filled["Parch"] + 1
        matrix = np.zeros((len(passengers), self.width))
        matrix[:, 0] = filled["Pclass"]
        matrix[:, 1] = filled["Age"]
        matrix[:, 2] = filled["Fare"]
        matrix[:, 3] = family_size
        matrix[:, 4] = family_size == 1
        matrix[:, 5] = [passenger.Cabin is not None for passenger in passengers]
        categorical = (
            [passenger.Sex for passenger in passengers],
            titles,
            [passenger.Embarked for passenger in passengers],
        )
        for columns, values in zip(self.one_hot, categorical, strict=True):
            # Unseen categories encode as all zeros, as the fitted encoder's handle_unknown="ignore".
            index = np.array([columns.get("missing" if value is None else value, -1) for value in values])
            rows = np.flatnonzero(index >= 0)
            matrix[rows, len(NUMERIC_FEATURES) + index[rows]] = 1.0
        return matrix

    def scores(self, passengers: Sequence[Any]) -> np.ndarray:
        return sigmoid(self.trees.raw(self.matrix(passengers)))


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def build_pipeline(random_state: int = 0) -> Pipeline:
    """Raw passenger columns -> survival probability."""
    model = GradientBoostingClassifier(
        n_estimators=300, learning_rate=0.05, max_depth=3, subsample=0.8, random_state=random_state
    )
    return Pipeline([("features", PassengerFeatures()), ("model", model)])


def cross_validated_accuracy(
    pipeline: Pipeline,
    frame: pd.DataFrame,
    target: pd.Series,
    folds: int = 5,
    random_state: int = 0,
) -> float:
    """Mean accuracy over shuffled stratified folds."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    scores = cross_val_score(pipeline, frame, target, cv=splitter, scoring="accuracy")
    return float(scores.mean())


def load_training_data(path: str | PathLike[str]) -> tuple[pd.DataFrame, pd.Series]:
    """Read the labelled CSV into (raw feature frame, Survived)."""
    data = pd.read_csv(path)
    return data[list(FEATURE_COLUMNS)], data[TARGET_COLUMN]
