"""TreeEnsemble gives scikit-learn's numbers, from arrays alone."""

import io
from typing import Any

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from modelserving.formats.artifacts import NPZ
from modelserving.formats.trees import TreeEnsemble, sigmoid

RNG = np.random.default_rng(7)
FEATURES = RNG.integers(-4, 5, size=(400, 5)).astype(float)
LABELS = (FEATURES[:, 0] + FEATURES[:, 1] * FEATURES[:, 2] + RNG.normal(size=400) > 0).astype(int)
# Thresholds fall half-way between integers: these rows sit exactly on them (<= goes left).
PROBE = np.vstack([FEATURES, FEATURES + 0.5, RNG.normal(scale=5, size=(50, 5))])


@pytest.mark.parametrize("depth", [1, 3, 6])
def test_classifier_probabilities_equal_predict_proba(depth: int) -> None:
    model = GradientBoostingClassifier(n_estimators=40, max_depth=depth, random_state=0).fit(FEATURES, LABELS)
    ensemble = TreeEnsemble.from_gradient_boosting(model)
    assert np.abs(sigmoid(ensemble.raw(PROBE)) - model.predict_proba(PROBE)[:, 1]).max() < 1e-12
    assert np.abs(ensemble.raw(PROBE) - model.decision_function(PROBE)).max() < 1e-12


def test_regressor_predictions_equal_predict_and_survive_the_npz_round_trip() -> None:
    target = FEATURES @ np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    model = GradientBoostingRegressor(n_estimators=30, max_depth=4, learning_rate=0.2, random_state=0)
    model.fit(FEATURES, target)
    arrays = TreeEnsemble.from_gradient_boosting(model).to_arrays()
    restored = TreeEnsemble.from_arrays(NPZ.load(NPZ.dump(arrays)))
    assert np.abs(restored.raw(PROBE) - model.predict(PROBE)).max() < 1e-12


@pytest.mark.parametrize("depth", [2, 5])  # looked up in a table, walked
def test_rows_next_to_every_threshold_go_where_scikit_learn_sends_them(depth: int) -> None:
    # Continuous features: thresholds are float64 midpoints that float32 cannot hold, so the
    # float32 just below and just above each one must go left and right as in scikit-learn.
    features = RNG.normal(size=(300, 4)).astype(np.float32).astype(float)
    target = features[:, 0] * features[:, 1] + np.sin(3 * features[:, 2])
    model = GradientBoostingRegressor(n_estimators=25, max_depth=depth, random_state=0).fit(features, target)
    probe: list[np.ndarray] = []
    for tree in (estimator.tree_ for estimator in model.estimators_[:, 0]):
        for feature, threshold in zip(tree.feature, tree.threshold, strict=True):
            if feature < 0:
                continue  # a leaf
            for value in (np.float32(threshold), *np.nextafter(np.float32(threshold), [-np.inf, np.inf])):
                row = features[len(probe) % len(features)].copy()
                row[feature] = value
                probe.append(row)
    rows = np.array(probe)
    ensemble = TreeEnsemble.from_gradient_boosting(model)
    assert np.abs(ensemble.raw(rows) - model.predict(rows)).max() < 1e-12


def test_no_rows_give_no_outputs() -> None:
    model = GradientBoostingRegressor(n_estimators=3, random_state=0).fit(FEATURES, LABELS)
    assert TreeEnsemble.from_gradient_boosting(model).raw(np.zeros((0, 5))).shape == (0,)


def test_bad_rows_are_refused() -> None:
    model = GradientBoostingRegressor(n_estimators=3, random_state=0).fit(FEATURES, LABELS)
    ensemble = TreeEnsemble.from_gradient_boosting(model)
    with pytest.raises(ValueError, match="5 features"):
        ensemble.raw(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        ensemble.raw(np.full((1, 5), np.nan))


def test_npz_artifacts_never_unpickle() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, objects=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        NPZ.load(buffer.getvalue())


@pytest.mark.parametrize(
    "model",
    [
        RandomForestClassifier(n_estimators=30, max_depth=5, random_state=0),
        RandomForestClassifier(n_estimators=10, max_depth=2, min_samples_leaf=5, random_state=0),
        DecisionTreeClassifier(max_depth=3, random_state=0),
        DecisionTreeClassifier(random_state=0),  # grown until pure: deeper than the table path
    ],
    ids=["forest, depth 5", "forest, depth 2", "tree, depth 3", "full tree"],
)
def test_forest_probabilities_equal_predict_proba(model: Any) -> None:
    model.fit(FEATURES, LABELS)
    arrays = TreeEnsemble.from_forest(model).to_arrays()
    restored = TreeEnsemble.from_arrays(NPZ.load(NPZ.dump(arrays)))
    assert np.abs(restored.raw(PROBE) - model.predict_proba(PROBE)[:, 1]).max() < 1e-12


def test_a_forest_of_more_than_two_classes_is_refused() -> None:
    model = DecisionTreeClassifier(max_depth=2).fit(FEATURES, LABELS + (FEATURES[:, 3] > 2))
    with pytest.raises(ValueError, match="only binary classifiers"):
        TreeEnsemble.from_forest(model)


def test_a_loss_with_another_link_is_refused() -> None:
    model = GradientBoostingClassifier(loss="exponential", n_estimators=5, random_state=0).fit(
        FEATURES, LABELS
    )
    with pytest.raises(ValueError, match="loss='exponential' cannot be converted"):
        TreeEnsemble.from_gradient_boosting(model)


@pytest.mark.parametrize(
    "init",
    [DummyClassifier(strategy="most_frequent"), LogisticRegression()],
    ids=["most_frequent", "logistic"],
)
def test_an_initial_estimator_other_than_the_prior_is_refused(init: Any) -> None:
    model = GradientBoostingClassifier(init=init, n_estimators=5, random_state=0).fit(FEATURES, LABELS)
    with pytest.raises(ValueError, match="init=.* cannot be converted"):
        TreeEnsemble.from_gradient_boosting(model)


@pytest.mark.parametrize("model_type", [GradientBoostingClassifier, GradientBoostingRegressor])
def test_a_zero_initial_estimator_is_reproduced(model_type: Any) -> None:
    model = model_type(init="zero", n_estimators=20, max_depth=3, random_state=0).fit(FEATURES, LABELS)
    ensemble = TreeEnsemble.from_gradient_boosting(model)
    expected = model.decision_function(PROBE) if hasattr(model, "classes_") else model.predict(PROBE)
    assert ensemble.base == 0.0
    assert np.abs(ensemble.raw(PROBE) - expected).max() < 1e-12


def test_a_multi_class_model_is_refused() -> None:
    three_classes = LABELS + (FEATURES[:, 3] > 2)
    model = GradientBoostingClassifier(n_estimators=5, random_state=0).fit(FEATURES, three_classes)
    with pytest.raises(ValueError, match="only binary classifiers can be converted, not 3 classes"):
        TreeEnsemble.from_gradient_boosting(model)
