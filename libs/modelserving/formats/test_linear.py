"""Linear models as arrays give scikit-learn's own predictions (to rounding), load with NumPy
alone from NPZ, and refuse what they cannot hold by name."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from modelserving import NPZ, load_model, save_model
from modelserving.formats.linear import ExportError, LinearModel, export


@pytest.mark.parametrize(
    ("load", "estimator"),
    [(load_wine, LogisticRegression(max_iter=2000)), (load_breast_cancer, LogisticRegression(max_iter=5000))],
    ids=["three classes (softmax)", "two classes (logistic)"],
)
def test_a_classifier_gives_scikit_learns_probabilities_and_classes(load: object, estimator: object) -> None:
    data = load()  # type: ignore[operator]
    pipeline = Pipeline([("scale", StandardScaler()), ("model", estimator)]).fit(data.data, data.target)
    model = LinearModel(export(pipeline))
    np.testing.assert_allclose(model.predict_proba(data.data), pipeline.predict_proba(data.data), atol=1e-9)
    np.testing.assert_array_equal(model.predict(data.data), pipeline.predict(data.data))


@pytest.mark.parametrize("estimator", [Ridge(alpha=1.0), LinearRegression()], ids=["ridge", "least squares"])
@pytest.mark.parametrize("scaled", [True, False], ids=["scaled", "raw"])
def test_a_regressor_gives_scikit_learns_values(estimator: object, scaled: bool) -> None:
    data = load_diabetes()
    steps = [("scale", StandardScaler())] if scaled else []
    pipeline = Pipeline([*steps, ("model", estimator)]).fit(data.data, data.target)
    model = LinearModel(export(pipeline))
    np.testing.assert_allclose(model.predict(data.data), pipeline.predict(data.data), rtol=1e-9, atol=1e-9)
    with pytest.raises(TypeError, match="no class probabilities"):
        model.predict_proba(data.data)


def test_the_arrays_round_trip_through_npz_without_pickles(tmp_path: Path) -> None:
    data = load_wine()
    pipeline = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=2000))])
    pipeline.fit(data.data, data.target)
    save_model(
        export(pipeline),
        tmp_path,
        name="wine",
        version="1",
        training_data=b"x",
        metrics={},
        libraries=("numpy",),
    )
    loaded = LinearModel(load_model(tmp_path, artifact_format=NPZ).estimator)
    np.testing.assert_allclose(loaded.predict_proba(data.data), pipeline.predict_proba(data.data), atol=1e-9)


@pytest.mark.parametrize(
    ("pipeline", "refused"),
    [
        (Pipeline([("scale", MinMaxScaler()), ("model", Ridge())]), "cannot export a MinMaxScaler step"),
        (Pipeline([("model", DecisionTreeClassifier())]), "cannot export a DecisionTreeClassifier"),
    ],
)
def test_what_it_cannot_hold_is_refused_by_name(pipeline: Pipeline, refused: str) -> None:
    data = load_wine()
    pipeline.fit(data.data, data.target)
    with pytest.raises(ExportError, match=refused):
        export(pipeline)
