"""What the Titanic service serves: passengers -> survival probability, with NumPy alone.

Training (`features.py`) fits a scikit-learn pipeline, then converts it into a
`SurvivalScorer`: the fitted feature parameters and the boosted trees as plain
arrays, saved in the `npz` artifact format. Serving imports this module only,
never scikit-learn or pandas, so the service starts in about a second and a
one-passenger prediction costs tens of microseconds. The feature code below is
also the pipeline's own transform, so training and serving cannot drift;
tests compare the scorer with the pipeline's `predict_proba` on every passenger.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from modelserving.trees import TreeEnsemble, sigmoid

NUMERIC_INPUTS: tuple[str, ...] = ("Pclass", "Age", "SibSp", "Parch", "Fare")
NUMERIC_FEATURES: tuple[str, ...] = ("Pclass", "Age", "Fare", "FamilySize", "IsAlone", "CabinKnown")
CATEGORICAL_FEATURES: tuple[str, ...] = ("Sex", "Title", "Embarked")
MISSING = "missing"

_TITLE_ALIASES = {"Mlle": "Miss", "Ms": "Miss", "Mme": "Mrs"}
_COMMON_TITLES = frozenset({"Mr", "Mrs", "Miss", "Master"})


def title_of(name: object) -> str:
    """'Braund, Mr. Owen Harris' -> 'Mr'; anything unusual -> 'Rare'."""
    if not isinstance(name, str) or "," not in name:
        return "Rare"
    title = name.split(",", 1)[1].split(".", 1)[0].strip()
    title = _TITLE_ALIASES.get(title, title)
    return title if title in _COMMON_TITLES else "Rare"


def categories_of(passenger: Any, title: str) -> tuple[str, str, str]:
    """The passenger's (Sex, Title, Embarked), a gap being MISSING."""
    return (
        MISSING if passenger.Sex is None else passenger.Sex,
        title,
        MISSING if passenger.Embarked is None else passenger.Embarked,
    )


@dataclass(frozen=True)
class PassengerEncoding:
    """Fitted feature parameters: passengers (objects with the passenger-list attributes) -> matrix.

    Numeric gaps are filled with training medians; a missing Age first falls back to
    the median age of the passenger's title (Master, Miss, ...). Sex, title and port
    are one-hot encoded; a value unseen in training encodes as all zeros.
    """

    medians: dict[str, float]
    age_by_title: dict[str, float]
    categories: tuple[tuple[str, ...], ...]  # per CATEGORICAL_FEATURES, in one-hot column order

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        encoded = [
            f"{feature}_{value}"
            for feature, values in zip(CATEGORICAL_FEATURES, self.categories, strict=True)
            for value in values
        ]
        return (*NUMERIC_FEATURES, *encoded)

    @cached_property
    def one_hot_columns(self) -> list[dict[str, int]]:
        """Per categorical feature: value -> its column in the matrix."""
        offsets = np.cumsum([len(NUMERIC_FEATURES), *(len(values) for values in self.categories)])
        return [
            {value: int(offset) + i for i, value in enumerate(values)}
            for values, offset in zip(self.categories, offsets, strict=False)
        ]

    def matrix(self, passengers: Sequence[Any]) -> np.ndarray:
        titles = [title_of(passenger.Name) for passenger in passengers]
        # One pass over the passengers; NumPy turns each None (a gap) into NaN.
        inputs = np.array(
            [[getattr(passenger, name) for name in NUMERIC_INPUTS] for passenger in passengers], dtype=float
        ).reshape(len(passengers), len(NUMERIC_INPUTS))
        number = dict(zip(NUMERIC_INPUTS, inputs.T, strict=True))
        title_age = np.array([self.age_by_title.get(title, math.nan) for title in titles], dtype=float)
        number["Age"] = np.where(np.isnan(number["Age"]), title_age, number["Age"])
        filled = {name: np.where(np.isnan(v), self.medians[name], v) for name, v in number.items()}
        family_size = filled["SibSp"] + filled["Parch"] + 1
        matrix = np.zeros((len(passengers), len(self.feature_names)))
        matrix[:, 0] = filled["Pclass"]
        matrix[:, 1] = filled["Age"]
        matrix[:, 2] = filled["Fare"]
        matrix[:, 3] = family_size
        matrix[:, 4] = family_size == 1
        matrix[:, 5] = [passenger.Cabin is not None for passenger in passengers]
        categories = [
            categories_of(passenger, title) for passenger, title in zip(passengers, titles, strict=True)
        ]
        for feature, columns in enumerate(self.one_hot_columns):
            index = np.array([columns.get(values[feature], -1) for values in categories], dtype=np.int64)
            rows = np.flatnonzero(index >= 0)
            matrix[rows, index[rows]] = 1.0
        return matrix


@dataclass(frozen=True)
class SurvivalScorer:
    """The served model: `scores(passengers)` = survival probabilities."""

    encoding: PassengerEncoding
    trees: TreeEnsemble

    def scores(self, passengers: Sequence[Any]) -> np.ndarray:
        return sigmoid(self.trees.raw(self.encoding.matrix(passengers)))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything as named arrays (the feature parameters as one JSON string), for NPZ."""
        encoding = {
            "medians": self.encoding.medians,
            "age_by_title": self.encoding.age_by_title,
            "categories": self.encoding.categories,
        }
        return {"encoding": np.array(json.dumps(encoding, sort_keys=True)), **self.trees.to_arrays()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SurvivalScorer:
        encoding = json.loads(str(arrays["encoding"]))
        return cls(
            PassengerEncoding(
                medians=encoding["medians"],
                age_by_title=encoding["age_by_title"],
                categories=tuple(tuple(values) for values in encoding["categories"]),
            ),
            TreeEnsemble.from_arrays(arrays),
        )
