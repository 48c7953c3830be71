"""Feature engineering and estimator for the Titanic survival model.

`build_pipeline` returns one scikit-learn Pipeline that takes the raw passenger
columns in `FEATURE_COLUMNS` (with gaps allowed) and predicts `Survived`, so a
fitted pipeline can be pickled with joblib and served on single records.
"""

from __future__ import annotations

from os import PathLike

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.impute import SimpleImputer
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

NUMERIC_FEATURES: tuple[str, ...] = (
    "Pclass",
    "Age",
    "Fare",
    "FamilySize",
    "IsAlone",
    "CabinKnown",
)
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


class PassengerFeatures(TransformerMixin, BaseEstimator):
    """Derive per-passenger features from the raw columns.

    Age gaps are filled with the median age of the passenger's title seen in
    `fit`, because title (Master, Miss, ...) is a strong proxy for age.
    """

    def fit(self, frame: pd.DataFrame, y: object = None) -> PassengerFeatures:
        features = self._derive(frame)
        medians = features.groupby("Title")["Age"].median().dropna()
        self.age_by_title_ = {str(t): float(age) for t, age in medians.items()}
        self.age_median_: float = float(features["Age"].median())
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        features = self._derive(frame)
        title_age = features["Title"].map(self.age_by_title_).astype(float)
        features["Age"] = features["Age"].fillna(title_age).fillna(self.age_median_)
        return features[list(NUMERIC_FEATURES + CATEGORICAL_FEATURES)]

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(NUMERIC_FEATURES + CATEGORICAL_FEATURES, dtype=object)

    @staticmethod
    def _derive(frame: pd.DataFrame) -> pd.DataFrame:
        def numeric(column: str) -> pd.Series:
            return pd.to_numeric(frame[column], errors="coerce").astype(float)

        def text(column: str) -> pd.Series:
            return frame[column].astype(object).where(frame[column].notna(), np.nan)

        family_size = numeric("SibSp").fillna(0) + numeric("Parch").fillna(0) + 1
        return pd.DataFrame(
            {
                "Pclass": numeric("Pclass"),
                "Age": numeric("Age"),
                "Fare": numeric("Fare"),
                "FamilySize": family_size,
                "IsAlone": (family_size == 1).astype(float),
                "CabinKnown": frame["Cabin"].notna().astype(float),
                "Sex": text("Sex"),
                "Title": frame["Name"].map(_title).astype(object),
                "Embarked": text("Embarked"),
            },
            index=frame.index,
        )


def build_pipeline(random_state: int = 0) -> Pipeline:
    """Raw passenger columns -> survival probability."""
    encode = ColumnTransformer(
        [
            ("numeric", SimpleImputer(strategy="median"), list(NUMERIC_FEATURES)),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                list(CATEGORICAL_FEATURES),
            ),
        ]
    )
    model = GradientBoostingClassifier(
        n_estimators=300,
        learning_rate=0.05,
        max_depth=3,
        subsample=0.8,
        random_state=random_state,
    )
    return Pipeline(
        [("features", PassengerFeatures()), ("encode", encode), ("model", model)]
    )


def cross_validated_accuracy(
    pipeline: Pipeline,
    frame: pd.DataFrame,
    target: pd.Series,
    folds: int = 5,
    random_state: int = 0,
) -> float:
    """Mean accuracy over shuffled stratified folds."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    return float(
        cross_val_score(pipeline, frame, target, cv=splitter, scoring="accuracy").mean()
    )


def load_training_data(path: str | PathLike[str]) -> tuple[pd.DataFrame, pd.Series]:
    """Read the labelled CSV into (raw feature frame, Survived)."""
    data = pd.read_csv(path)
    return data[list(FEATURE_COLUMNS)], data[TARGET_COLUMN]
