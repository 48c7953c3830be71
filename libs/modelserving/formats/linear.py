"""Linear models as arrays: a fitted scikit-learn linear model, optionally after a
`StandardScaler`, exported at training time to named NumPy arrays (`NPZ`: nothing runs when
they load), and predicted with NumPy alone, so the service's image needs no scikit-learn.

    arrays = linear.export(pipeline)              # training: Pipeline([scaler?, model])
    model = linear.LinearModel(loaded.estimator)  # serving: the arrays back as a model
    model.predict_proba(features)                 # a classifier's; `predict` a regressor's

What it exports: any estimator with `coef_` and `intercept_` (LinearRegression, Ridge, Lasso,
ElasticNet, LogisticRegression...); a classifier (one with `classes_`) gets its class
probabilities as scikit-learn's `predict_proba` computes them (logistic for two classes,
softmax for more). Any other step or model is refused by name: serve it as trees
(`modelserving.formats.trees`) or, as a last resort, as a pickle (`modelserving.formats.joblib`).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ExportError(ValueError):
    """The pipeline holds something this module cannot turn into arrays; the message says what."""


def export(pipeline: Any) -> dict[str, np.ndarray]:
    """The arrays of a fitted linear model (or a pipeline of a StandardScaler and one)."""
    steps = [step for _, step in getattr(pipeline, "steps", [("model", pipeline)])]
    *preprocessing, model = steps
    width = _columns(np.asarray(model.coef_)) if hasattr(model, "coef_") else 0
    mean, scale = np.zeros(width), np.ones(width)
    for step in preprocessing:
        if type(step).__name__ != "StandardScaler":
            raise ExportError(
                f"cannot export a {type(step).__name__} step: only a StandardScaler before the model"
            )
        mean = step.mean_ if step.with_mean else mean
        scale = step.scale_ if step.with_std else scale
    if not (hasattr(model, "coef_") and hasattr(model, "intercept_")):
        raise ExportError(f"cannot export a {type(model).__name__}: not a linear model (coef_, intercept_)")
    coef = np.atleast_2d(np.asarray(model.coef_, dtype=float))
    arrays = {
        "mean": np.asarray(mean, dtype=float),
        "scale": np.asarray(scale, dtype=float),
        "coef": coef,
        "intercept": np.atleast_1d(np.asarray(model.intercept_, dtype=float)),
    }
    if hasattr(model, "classes_"):
        arrays["classes"] = np.asarray(model.classes_)
    return arrays


class LinearModel:
    """The arrays of `export`, as a model: `predict` (a regressor's values, a classifier's classes)
    and `predict_proba` (a classifier's class probabilities, columns in `classes` order)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.mean, self.scale = arrays["mean"], arrays["scale"]
        self.coef, self.intercept = arrays["coef"], arrays["intercept"]
        self.classes = arrays.get("classes")

    def decision(self, features: np.ndarray) -> np.ndarray:
        """The linear scores, (rows, outputs)."""
        return ((np.asarray(features, dtype=float) - self.mean) / self.scale) @ self.coef.T + self.intercept

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        if self.classes is None:
            raise TypeError("a regressor has no class probabilities")
        scores = self.decision(features)
        if _columns(scores) == 1:  # two classes: the logistic of the one score
            positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.column_stack([1.0 - positive, positive])
        scores = scores - scores.max(axis=1, keepdims=True)
        exponentials = np.exp(scores)
        return exponentials / exponentials.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]

    def predict(self, features: np.ndarray) -> np.ndarray:
        if self.classes is not None:
            best = np.argmax(self.predict_proba(features), axis=1)
            return self.classes[best]  # type: ignore[no-any-return]
        scores = self.decision(features)
        return scores[:, 0] if _columns(scores) == 1 else scores  # type: ignore[no-any-return]


def _columns(array: np.ndarray) -> int:
    return int(np.shape(array)[-1])
