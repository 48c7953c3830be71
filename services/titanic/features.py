"""Feature engineering and estimator for the Titanic survival model.

`build_pipeline` returns one scikit-learn Pipeline that takes the raw passenger
columns in `FEATURE_COLUMNS` (gaps allowed) and predicts `Survived`; training
cross-validates and fits it, then `survival_scorer` converts the fitted pipeline
into what the service serves (titanic.scoring: NumPy only, no pickle).
"""

from __future__ import annotations

from os import PathLike
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline

from modelserving.trees import TreeEnsemble
from titanic.scoring import NUMERIC_INPUTS, PassengerEncoding, SurvivalScorer, categories_of, title_of

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


class PassengerFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # sklearn is untyped
    """Raw passenger columns -> numeric feature matrix, by the `PassengerEncoding` fitted here.

    `transform` is the encoding the service serves (titanic.scoring), applied to
    the frame's records: one piece of feature code for training and serving.
    """

    def fit(self, frame: pd.DataFrame, y: object = None) -> PassengerFeatures:
        passengers = _records(frame)
        titles = [title_of(passenger.Name) for passenger in passengers]
        numbers = {
            column: pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
            for column in NUMERIC_INPUTS
        }
        by_title = pd.Series(numbers["Age"]).groupby(titles).median().dropna()
        values = list(
            zip(*(categories_of(p, t) for p, t in zip(passengers, titles, strict=True)), strict=True)
        )
        self.encoding_ = PassengerEncoding(
            medians={name: float(np.nanmedian(column)) for name, column in numbers.items()},
            age_by_title={str(title): float(age) for title, age in by_title.items()},
            categories=tuple(tuple(sorted(set(column))) for column in values),
        )
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        return self.encoding_.matrix(_records(frame))

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(self.encoding_.feature_names, dtype=object)


def _records(frame: pd.DataFrame) -> list[Any]:
    """The frame's rows as objects with one attribute per column, gaps as None (as requests have them)."""
    return list(frame.astype(object).where(frame.notna(), None).itertuples(index=False))


def survival_scorer(pipeline: Pipeline) -> SurvivalScorer:
    """The fitted pipeline in the form the service serves (the npz artifact's contents)."""
    encoding = pipeline.named_steps["features"].encoding_
    return SurvivalScorer(encoding, TreeEnsemble.from_gradient_boosting(pipeline.named_steps["model"]))


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
