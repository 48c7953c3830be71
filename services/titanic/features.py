"""Feature engineering, candidate models and model selection for the Titanic survival model.

Every candidate is one scikit-learn Pipeline that takes the raw passenger columns
in `FEATURE_COLUMNS` (gaps allowed) and predicts `Survived`. `select` compares
them by repeated stratified cross-validation, every feature (group outcomes, ages
by title, medians) fitted inside each training fold, and keeps the simplest
candidate within one standard error of the best. `survival_scorer` converts the
fitted winner into what the service serves (titanic.scoring: NumPy only, no pickle).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from modelserving.formats.trees import TreeEnsemble
from titanic.scoring import (
    NUMERIC_INPUTS,
    LogisticModel,
    PassengerEncoding,
    SurvivalScorer,
    categories_of,
    group_keys,
    is_woman_or_child,
    title_of,
)

FEATURE_COLUMNS: tuple[str, ...] = (
    "PassengerId",
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
FOLDS, REPEATS = 5, 10


class PassengerFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # sklearn is untyped
    """Raw passenger columns -> numeric feature matrix, by the `PassengerEncoding` fitted here.

    `transform` is the encoding the service serves (titanic.scoring), applied to
    the frame's records: one piece of feature code for training and serving.
    `columns` keeps only some features (the baselines look at sex and class alone).
    """

    def __init__(self, columns: tuple[str, ...] | None = None) -> None:
        self.columns = columns

    def fit(self, frame: pd.DataFrame, survived: pd.Series) -> PassengerFeatures:
        passengers = passenger_records(frame)
        titles = [title_of(passenger.Name) for passenger in passengers]
        numbers = {
            column: pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
            for column in NUMERIC_INPUTS
        }
        by_title = pd.Series(numbers["Age"]).groupby(titles).median().dropna()
        values = list(
            zip(*(categories_of(p, t) for p, t in zip(passengers, titles, strict=True)), strict=True)
        )
        groups: defaultdict[str, list[list[int]]] = defaultdict(list)
        for passenger, title, lived in zip(passengers, titles, np.asarray(survived), strict=True):
            if is_woman_or_child(passenger, title):
                for key in group_keys(passenger):
                    groups[key].append([int(passenger.PassengerId), int(lived)])
        self.encoding_ = PassengerEncoding(
            medians={name: float(np.nanmedian(column)) for name, column in numbers.items()},
            age_by_title={str(title): float(age) for title, age in by_title.items()},
            categories=tuple(tuple(sorted(set(column))) for column in values),
            group_outcomes=dict(sorted(groups.items())),
            columns=self.columns,
        )
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        return self.encoding_.matrix(passenger_records(frame))

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(self.encoding_.feature_names, dtype=object)


def passenger_records(frame: pd.DataFrame) -> list[Any]:
    """The frame's rows as objects with one attribute per column, gaps as None (as requests have them)."""
    return list(frame.astype(object).where(frame.notna(), None).itertuples(index=False))


def _pipeline(model: Any, columns: tuple[str, ...] | None = None, scale: bool = False) -> Pipeline:
    steps = [("features", PassengerFeatures(columns))]
    if scale:
        steps.append(("scale", StandardScaler()))
    return Pipeline([*steps, ("model", model)])


@dataclass(frozen=True)
class Candidate:
    """A model to compare: its name and a function of the seed building its unfitted pipeline."""

    name: str
    build: Callable[[int], Pipeline]


# Rules are trees grown on their own columns: each leaf is one cell's majority outcome.
CANDIDATES: tuple[Candidate, ...] = (
    Candidate("women survive", lambda seed: _pipeline(DecisionTreeClassifier(), ("Sex_female",))),
    Candidate(
        "sex x class majority", lambda seed: _pipeline(DecisionTreeClassifier(), ("Sex_female", "Pclass"))
    ),
    Candidate(
        "logistic regression, C=1",
        lambda seed: _pipeline(LogisticRegression(C=1.0, max_iter=1000), scale=True),
    ),
    Candidate(
        "logistic regression, C=0.1",
        lambda seed: _pipeline(LogisticRegression(C=0.1, max_iter=1000), scale=True),
    ),
    Candidate(
        "random forest, 100 x depth 5",
        lambda seed: _pipeline(RandomForestClassifier(100, max_depth=5, random_state=seed)),
    ),
    Candidate(
        "random forest, 100 x depth 8, leaves >= 5",
        lambda seed: _pipeline(
            RandomForestClassifier(100, max_depth=8, min_samples_leaf=5, random_state=seed)
        ),
    ),
    Candidate(
        "boosted trees, 300 x depth 3 (the previous model)",
        lambda seed: _pipeline(
            GradientBoostingClassifier(
                n_estimators=300, learning_rate=0.05, max_depth=3, subsample=0.8, random_state=seed
            )
        ),
    ),
    Candidate(
        "boosted trees, 100 x depth 2",
        lambda seed: _pipeline(
            GradientBoostingClassifier(n_estimators=100, learning_rate=0.1, max_depth=2, random_state=seed)
        ),
    ),
    Candidate(
        "boosted trees, 100 x depth 2, regularised",
        lambda seed: _pipeline(
            GradientBoostingClassifier(
                n_estimators=100,
                learning_rate=0.05,
                max_depth=2,
                subsample=0.7,
                min_samples_leaf=10,
                random_state=seed,
            )
        ),
    ),
)
BASELINE = CANDIDATES[0].name


def fitted_parameters(pipeline: Pipeline) -> int:
    """How many numbers the fitted model learned: tree leaves, or coefficients and intercept."""
    model = pipeline.named_steps["model"]
    if isinstance(model, LogisticRegression):
        return int(model.coef_.size + model.intercept_.size)
    trees = np.asarray(getattr(model, "estimators_", [model]), dtype=object).ravel()
    return int(sum(tree.get_n_leaves() for tree in trees))


@dataclass(frozen=True)
class Result:
    """One candidate's accuracies over the folds of every repeat, and its size fitted on all data."""

    name: str
    accuracies: np.ndarray
    parameters: int

    @property
    def mean(self) -> float:
        return float(self.accuracies.mean())

    @property
    def sd(self) -> float:
        return float(self.accuracies.std(ddof=1))

    @property
    def standard_error(self) -> float:
        return self.sd / float(np.sqrt(len(self.accuracies)))


def compare(
    frame: pd.DataFrame, survived: pd.Series, seed: int, candidates: Sequence[Candidate] = CANDIDATES
) -> list[Result]:
    """Each candidate's accuracy over REPEATS x FOLDS stratified folds, the same folds for all."""
    folds = RepeatedStratifiedKFold(n_splits=FOLDS, n_repeats=REPEATS, random_state=seed)
    return [
        Result(
            candidate.name,
            cross_val_score(candidate.build(seed), frame, survived, cv=folds, scoring="accuracy"),
            fitted_parameters(candidate.build(seed).fit(frame, survived)),
        )
        for candidate in candidates
    ]


def simplest_within_one_standard_error(results: Sequence[Result]) -> Result:
    """The one-standard-error rule: of the candidates whose mean accuracy is within one standard
    error of the best's, the one with the fewest fitted parameters."""
    best = max(results, key=lambda result: result.mean)
    close = [result for result in results if result.mean >= best.mean - best.standard_error]
    return min(close, key=lambda result: (result.parameters, -result.mean))


def candidate(name: str) -> Candidate:
    return next(candidate for candidate in CANDIDATES if candidate.name == name)


def survival_scorer(pipeline: Pipeline) -> SurvivalScorer:
    """The fitted pipeline in the form the service serves (the npz artifact's contents)."""
    encoding = pipeline.named_steps["features"].encoding_
    model = pipeline.named_steps["model"]
    if isinstance(model, LogisticRegression):
        scaler = pipeline.named_steps["scale"]
        linear = LogisticModel(scaler.mean_, scaler.scale_, model.coef_[0], float(model.intercept_[0]))
        return SurvivalScorer(encoding, linear, "log-odds")
    if isinstance(model, GradientBoostingClassifier):
        return SurvivalScorer(encoding, TreeEnsemble.from_gradient_boosting(model), "log-odds")
    return SurvivalScorer(encoding, TreeEnsemble.from_forest(model), "probability")


def load_training_data(path: str | PathLike[str]) -> tuple[pd.DataFrame, pd.Series]:
    """Read the labelled CSV into (raw feature frame, Survived)."""
    data = pd.read_csv(path)
    return data[list(FEATURE_COLUMNS)], data[TARGET_COLUMN]
