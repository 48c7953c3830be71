"""What the Titanic service serves: passengers -> survival probability, with NumPy alone.

Training (`features.py`) selects and fits a scikit-learn pipeline, then converts
it into a `SurvivalScorer`: the fitted feature parameters and the model (trees or
a logistic regression) as plain arrays, saved in the `npz` artifact format.
Serving imports this module only, never scikit-learn or pandas, so the service
starts fast and a one-passenger prediction costs microseconds. The feature code
below is also the pipeline's own transform, so training and serving cannot
drift; tests compare the scorer with the pipeline's `predict_proba` on every
passenger.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from modelserving.formats.trees import TreeEnsemble, sigmoid

NUMERIC_INPUTS: tuple[str, ...] = ("Pclass", "Age", "SibSp", "Parch", "Fare")
NUMERIC_FEATURES: tuple[str, ...] = ("Pclass", "Age", "Fare", "FamilySize", "IsAlone", "CabinKnown")
CATEGORICAL_FEATURES: tuple[str, ...] = ("Sex", "Title", "Embarked")
# What became of the women and children among the other training passengers of the passenger's
# groups (same ticket; same surname and class): families and parties mostly lived or died together.
GROUP_FEATURES: tuple[str, ...] = ("GroupKnown", "GroupSurvival", "GroupAllDied", "GroupAllLived")
MISSING = "missing"
# From this many passengers a request's features are computed a column at a time.
COLUMNS_FROM = 64

_TITLE_ALIASES = {"Mlle": "Miss", "Ms": "Miss", "Mme": "Mrs"}
_COMMON_TITLES = frozenset({"Mr", "Mrs", "Miss", "Master"})


def title_of(name: object) -> str:
    """'Braund, Mr. Owen Harris' -> 'Mr'; anything unusual -> 'Rare'."""
    if not isinstance(name, str) or "," not in name:
        return "Rare"
    title = name.split(",", 1)[1].split(".", 1)[0].strip()
    title = _TITLE_ALIASES.get(title, title)
    return title if title in _COMMON_TITLES else "Rare"


def surname_of(name: object) -> str | None:
    """'Braund, Mr. Owen Harris' -> 'Braund'; None if the name has no 'surname, ' part."""
    if not isinstance(name, str) or "," not in name:
        return None
    return name.split(",", 1)[0].strip() or None


def group_keys(passenger: Any) -> list[str]:
    """The groups a passenger belongs to: their ticket, and their surname within their class."""
    keys = []
    if passenger.Ticket:
        keys.append(f"ticket {passenger.Ticket}")
    surname = surname_of(passenger.Name)
    if surname is not None:
        keys.append(f"family {surname} {passenger.Pclass}")
    return keys


def is_woman_or_child(passenger: Any, title: str) -> bool:
    return bool(passenger.Sex == "female" or title == "Master")


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
    are one-hot encoded; a value unseen in training encodes as all zeros. The group
    features count the outcomes in `group_outcomes` of the passenger's groups, leaving
    out the passenger's own (a training passenger's own label never describes them).
    `columns`, if set, keeps only those features (a baseline that looks at sex alone).
    """

    medians: dict[str, float]
    age_by_title: dict[str, float]
    categories: tuple[tuple[str, ...], ...]  # per CATEGORICAL_FEATURES, in one-hot column order
    # Group key -> [[PassengerId, survived], ...] of the training women and children in it.
    group_outcomes: dict[str, list[list[int]]]
    columns: tuple[str, ...] | None = None

    @cached_property
    def all_feature_names(self) -> tuple[str, ...]:
        encoded = [
            f"{feature}_{value}"
            for feature, values in zip(CATEGORICAL_FEATURES, self.categories, strict=True)
            for value in values
        ]
        return (*NUMERIC_FEATURES, *encoded, *GROUP_FEATURES)

    @cached_property
    def selected(self) -> list[int] | None:
        if self.columns is None:
            return None
        return [self.all_feature_names.index(column) for column in self.columns]

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        return self.columns or self.all_feature_names

    @cached_property
    def one_hot_columns(self) -> list[dict[str, int]]:
        """Per categorical feature: value -> its column in the matrix."""
        offsets = np.cumsum([len(NUMERIC_FEATURES), *(len(values) for values in self.categories)])
        return [
            {value: int(offset) + i for i, value in enumerate(values)}
            for values, offset in zip(self.categories, offsets, strict=False)
        ]

    def matrix(self, passengers: Sequence[Any]) -> np.ndarray:
        if len(passengers) >= COLUMNS_FROM:
            rows = self.column_matrix(passengers)
        else:
            # Row by row in plain Python: a handful of NumPy calls per feature would cost more
            # than the arithmetic they vectorise.
            rows = np.array([self.row(passenger) for passenger in passengers], dtype=float)
            rows = rows.reshape(len(passengers), len(self.all_feature_names))
        return rows if self.selected is None else rows[:, self.selected]

    def column_matrix(self, passengers: Sequence[Any]) -> np.ndarray:
        """The same matrix as `row` gives, a feature at a time over all passengers."""
        titles = [title_of(passenger.Name) for passenger in passengers]
        medians = self.medians

        def numeric(name: str) -> np.ndarray:
            return np.array([_gap_as_nan(getattr(passenger, name)) for passenger in passengers], dtype=float)

        def filled(values: np.ndarray, default: float) -> np.ndarray:
            return np.where(np.isnan(values), default, values)

        age = numeric("Age")
        gaps = np.flatnonzero(np.isnan(age))
        age[gaps] = [_gap_as_nan(self.age_by_title.get(titles[i])) for i in gaps]
        family_size = (
            filled(numeric("SibSp"), medians["SibSp"]) + filled(numeric("Parch"), medians["Parch"]) + 1
        )
        matrix = np.zeros((len(passengers), len(self.all_feature_names)))
        matrix[:, : len(NUMERIC_FEATURES)] = np.column_stack(
            [
                filled(numeric("Pclass"), medians["Pclass"]),
                filled(age, medians["Age"]),
                filled(numeric("Fare"), medians["Fare"]),
                family_size,
                family_size == 1,
                [passenger.Cabin is not None for passenger in passengers],
            ]
        )
        categories = [
            categories_of(passenger, title) for passenger, title in zip(passengers, titles, strict=True)
        ]
        for feature, columns in enumerate(self.one_hot_columns):
            hot = [
                (i, columns[values[feature]])
                for i, values in enumerate(categories)
                if values[feature] in columns
            ]
            if hot:
                matrix[tuple(np.array(hot).T)] = 1.0
        matrix[:, -len(GROUP_FEATURES) :] = [self.group_features(passenger) for passenger in passengers]
        return matrix

    @cached_property
    def group_members(self) -> dict[str, dict[int, int]]:
        """Group key -> {PassengerId: survived} of its training women and children."""
        return {
            key: {passenger_id: survived for passenger_id, survived in outcomes}
            for key, outcomes in self.group_outcomes.items()
        }

    def row(self, passenger: Any) -> list[float]:
        """One passenger's features, in `all_feature_names` order."""
        title = title_of(passenger.Name)
        medians = self.medians
        age = passenger.Age
        if _is_gap(age):
            age = self.age_by_title.get(title)
        sibsp = _filled(passenger.SibSp, medians["SibSp"])
        parch = _filled(passenger.Parch, medians["Parch"])
        family_size = sibsp + parch + 1
        row = [
            _filled(passenger.Pclass, medians["Pclass"]),
            _filled(age, medians["Age"]),
            _filled(passenger.Fare, medians["Fare"]),
            family_size,
            float(family_size == 1),
            float(passenger.Cabin is not None),
        ]
        row += [0.0] * (len(self.all_feature_names) - len(row) - len(GROUP_FEATURES))
        for columns, value in zip(self.one_hot_columns, categories_of(passenger, title), strict=True):
            column = columns.get(value)
            if column is not None:
                row[column] = 1.0
        row += self.group_features(passenger)
        return row

    def group_features(self, passenger: Any) -> list[float]:
        """GROUP_FEATURES: whether any outcome is known, the share that lived (one half if none
        is known), and whether all died or all lived."""
        outcomes: dict[int, int] = {}
        for key in group_keys(passenger):
            outcomes.update(self.group_members.get(key, ()))
        outcomes.pop(passenger.PassengerId, None)
        if not outcomes:
            return [0.0, 0.5, 0.0, 0.0]
        share = sum(outcomes.values()) / len(outcomes)
        return [1.0, share, float(share == 0.0), float(share == 1.0)]


def _is_gap(value: Any) -> bool:
    """None, or a NaN (pandas' gap)."""
    return value is None or value != value


def _gap_as_nan(value: Any) -> float:
    return np.nan if value is None else value  # type: ignore[no-any-return]


def _filled(value: Any, default: float) -> float:
    return default if _is_gap(value) else float(value)


@dataclass(frozen=True)
class LogisticModel:
    """A logistic regression on standardised features: `raw(rows)` = log-odds."""

    mean: np.ndarray  # float64 [features]
    scale: np.ndarray  # float64 [features]
    coef: np.ndarray  # float64 [features]
    intercept: float

    def raw(self, rows: np.ndarray) -> np.ndarray:
        raw: np.ndarray = ((rows - self.mean) / self.scale) @ self.coef + self.intercept
        return raw

    def to_arrays(self, prefix: str = "logistic.") -> dict[str, np.ndarray]:
        return {
            prefix + "mean": self.mean,
            prefix + "scale": self.scale,
            prefix + "coef": self.coef,
            prefix + "intercept": np.array(self.intercept),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "logistic.") -> LogisticModel:
        mean, scale, coef = (
            np.asarray(arrays[prefix + name], dtype=float) for name in ("mean", "scale", "coef")
        )
        if mean.ndim != 1 or len({array.shape for array in (mean, scale, coef)}) != 1:
            shapes = [mean.shape, scale.shape, coef.shape]
            raise ValueError(f"inconsistent logistic arrays: shapes {shapes}")
        return cls(mean, scale, coef, float(arrays[prefix + "intercept"]))


# How a model's raw output becomes a probability: boosted trees and logistic regressions give
# log-odds; forests (and single trees) give the probability itself.
def _probability(raw: np.ndarray) -> np.ndarray:
    return raw


OUTPUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"log-odds": sigmoid, "probability": _probability}
MODEL_KINDS: dict[str, type[TreeEnsemble] | type[LogisticModel]] = {
    "trees": TreeEnsemble,
    "logistic": LogisticModel,
}


@dataclass(frozen=True)
class SurvivalScorer:
    """The served model: `scores(passengers)` = survival probabilities."""

    encoding: PassengerEncoding
    model: TreeEnsemble | LogisticModel
    output: str  # a key of OUTPUTS

    def scores(self, passengers: Sequence[Any]) -> np.ndarray:
        return OUTPUTS[self.output](self.model.raw(self.encoding.matrix(passengers)))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything as named arrays (the feature parameters as one JSON string), for NPZ."""
        encoding = {
            "medians": self.encoding.medians,
            "age_by_title": self.encoding.age_by_title,
            "categories": self.encoding.categories,
            "group_outcomes": self.encoding.group_outcomes,
            "columns": self.encoding.columns,
        }
        kind = next(kind for kind, model_type in MODEL_KINDS.items() if isinstance(self.model, model_type))
        return {
            "encoding": np.array(json.dumps(encoding, sort_keys=True)),
            "model": np.array(json.dumps({"kind": kind, "output": self.output})),
            **self.model.to_arrays(),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SurvivalScorer:
        encoding = json.loads(str(arrays["encoding"]))
        model = json.loads(str(arrays["model"]))
        if model["kind"] not in MODEL_KINDS or model["output"] not in OUTPUTS:
            raise ValueError(f"unknown model {model}: kinds {sorted(MODEL_KINDS)}, outputs {sorted(OUTPUTS)}")
        columns = encoding["columns"]
        return cls(
            PassengerEncoding(
                medians=encoding["medians"],
                age_by_title=encoding["age_by_title"],
                categories=tuple(tuple(values) for values in encoding["categories"]),
                group_outcomes=encoding["group_outcomes"],
                columns=None if columns is None else tuple(columns),
            ),
            MODEL_KINDS[model["kind"]].from_arrays(arrays),
            model["output"],
        )
