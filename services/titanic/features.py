"""Feature engineering and estimator for the Titanic survival model.

`build_pipeline` returns one scikit-learn Pipeline that takes the raw passenger
columns in `FEATURE_COLUMNS` (gaps allowed) and predicts `Survived`, so a fitted
pipeline can be pickled with joblib and served on single records.
"""

from __future__ import annotations

from os import PathLike

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

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
