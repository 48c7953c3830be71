"""Models as data: what serving a fitted pipeline from arrays costs, per call, and how exactly.

    ./pants run bench:formats

Fits six models on real data (and one synthetic Titanic-like table with gaps and a text
column), converts each with `modelserving.dev.export`, loads it back through the artifact's
bytes, and prints for each: the largest difference from the fitted model over the training
set, the artifact's size, and one-row latency (200 calls to warm up, then 2,000, cycling
through the rows: p50 and p99 in µs), pinned to one CPU where the machine has two. The
README's comparison with ONNX was measured with the same models and method (bench/README.md).
"""

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import xgboost
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelserving.dev import export
from modelserving.formats.pipeline import PIPELINE

CALLS, WARM_UP = 2_000, 200


def titanic_like(count: int = 891, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class, age (a fifth missing), siblings, parents, fare, port of embarkation (text)."""
    rng = np.random.default_rng(seed)
    pclass = rng.choice([1.0, 2.0, 3.0], size=count, p=[0.24, 0.21, 0.55])
    age = rng.normal(30, 14, count).clip(0.5, 80)
    fare = np.exp(rng.normal(3.0 - 0.6 * (pclass - 1), 0.8, count))
    sibsp, parch = rng.poisson(0.5, count).astype(float), rng.poisson(0.4, count).astype(float)
    port = rng.choice(["S", "C", "Q"], size=count, p=[0.72, 0.19, 0.09])
    logit = 1.2 - 0.9 * (pclass - 2) - 0.03 * (age - 30) + 0.004 * fare - 0.3 * sibsp + (port == "C") * 0.6
    survived = (logit + rng.normal(0, 0.8, count) > 0.8).astype(int)
    age[rng.random(count) < 0.2] = np.nan
    rows = np.empty((count, 6), dtype=object)
    for column, values in enumerate([pclass, age, sibsp, parch, fare, port]):
        rows[:, column] = values
    return rows, survived


def models() -> dict[str, tuple[Any, ...]]:
    wine, cancer = load_wine(return_X_y=True), load_breast_cancer(return_X_y=True)
    diabetes = load_diabetes(return_X_y=True, scaled=False)
    numbers = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    mixed = ColumnTransformer(
        [("numbers", numbers, [0, 1, 2, 3, 4]), ("port", OneHotEncoder(handle_unknown="ignore"), [5])]
    )
    stumps = xgboost.XGBRegressor(
        n_estimators=300,
        max_depth=1,
        learning_rate=0.05,
        subsample=0.8,
        colsample_bytree=0.8,
        random_state=0,
        n_jobs=1,
    )
    return {
        "wine, scaled logistic regression": (
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
            *wine,
        ),
        "diabetes, scaled ridge": (make_pipeline(StandardScaler(), Ridge()), *diabetes),
        "cancer, histogram gradient boosting": (HistGradientBoostingClassifier(random_state=0), *cancer),
        "diabetes, XGBoost 300 stumps": (stumps, *diabetes),
        "titanic-like, impute + scale + one-hot + gradient boosting": (
            make_pipeline(mixed, GradientBoostingClassifier(random_state=0)),
            *titanic_like(),
        ),
        "cancer, random forest of 100": (RandomForestClassifier(n_estimators=100, random_state=0), *cancer),
    }


def latency_us(predict: Callable[[np.ndarray], Any], rows: np.ndarray) -> tuple[float, float]:
    one_rows = [rows[index : index + 1] for index in range(len(rows))]
    for index in range(WARM_UP):
        predict(one_rows[index % len(one_rows)])
    times = []
    for index in range(CALLS):
        started = time.perf_counter_ns()
        predict(one_rows[index % len(one_rows)])
        times.append(time.perf_counter_ns() - started)
    times.sort()
    return times[len(times) // 2] / 1000, times[int(len(times) * 0.99)] / 1000


def main() -> None:
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})
    print(f"{'model':60} {'max diff':>10} {'artifact':>10} {'p50 µs':>8} {'p99 µs':>8}")
    for name, (model, rows, target) in models().items():
        model.fit(rows, target)
        payload = PIPELINE.dump(export.checked(model, rows))
        served = PIPELINE.load(payload)
        difference = export.check(model, served, rows)
        table = export.serving_matrix(rows)
        predict = served.predict_proba if served.classes is not None else served.predict
        p50, p99 = latency_us(predict, table)
        print(f"{name:60} {difference:10.2g} {len(payload) / 1024:8.1f} kB {p50:8.1f} {p99:8.1f}")


if __name__ == "__main__":
    main()
