"""An ArrayPipeline computes what its arrays say, by hand-checkable arithmetic, and loads from an
.npz that holds no pickle."""

import io
import json
from typing import Any

import numpy as np
import pytest

from modelserving.formats.pipeline import (
    PIPELINE,
    ArrayPipeline,
    Block,
    ColumnStage,
    Impute,
    LinearModel,
    OneHot,
    Standardise,
    Trees,
    matrix,
)

# Two inputs: a number with gaps (filled with 10, then standardised around 10 with scale 2) and
# a colour one-hot encoded; then a logistic model over the three features.
PIPE = ArrayPipeline(
    stages=(
        ColumnStage(
            (
                Block(
                    np.array([0]), (Impute(np.array([10.0])), Standardise(np.array([10.0]), np.array([2.0])))
                ),
                Block(np.array([1]), (OneHot((np.array(["red", "blue"]),)),)),
            )
        ),
    ),
    model=LinearModel(coef=np.array([[1.0, 2.0, -2.0]]), intercept=np.array([0.5])),
    link="logistic",
    classes=np.array(["no", "yes"]),
)


def rows(*values: tuple[object, object]) -> np.ndarray:
    table = np.empty((len(values), 2), dtype=object)
    table[:] = values
    return table


def test_columns_are_imputed_scaled_and_encoded_in_block_order() -> None:
    np.testing.assert_array_equal(
        PIPE.transform(rows((14.0, "red"), (None, "blue"), (8.0, "green"))),
        [[2.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]],
    )


def test_the_logistic_link_gives_both_classes_probabilities_and_the_likelier_class() -> None:
    probabilities = PIPE.predict_proba(rows((14.0, "red"), (None, "blue")))
    positive = 1 / (1 + np.exp(-np.array([2.0 + 2.0 + 0.5, -2.0 + 0.5])))
    np.testing.assert_allclose(probabilities, np.column_stack([1 - positive, positive]))
    assert PIPE.predict(rows((14.0, "red"), (None, "blue"))).tolist() == ["yes", "no"]


def test_trees_follow_thresholds_and_send_missing_values_their_learnt_way() -> None:
    # One stump on feature 1: <= 0.5 (or missing) -> leaf 1 (value -1), else leaf 2 (value +3).
    stump = Trees(
        left=np.array([1, 1, 2]),
        right=np.array([2, 1, 2]),
        feature=np.array([1, 0, 0]),
        threshold=np.array([0.5, np.inf, np.inf]),
        missing_left=np.array([True, False, False]),
        value=np.array([[0.0], [-1.0], [3.0]]),
        roots=np.array([0]),
        base=np.array([100.0]),
        depth=1,
    )
    regressor = ArrayPipeline(stages=(), model=stump, link="identity")
    features = np.array([[7.0, 0.5], [7.0, 0.51], [7.0, np.nan]])
    assert regressor.predict(features).tolist() == [99.0, 103.0, 99.0]


def test_a_softmax_sums_to_one_across_classes() -> None:
    softmax = ArrayPipeline((), LinearModel(np.eye(3), np.zeros(3)), "softmax", np.array([0, 1, 2]))
    probabilities = softmax.predict_proba(np.array([[0.0, np.log(2), np.log(5)]]))
    np.testing.assert_allclose(probabilities, [[1 / 8, 2 / 8, 5 / 8]])


def test_the_artifact_round_trips_and_holds_no_pickle() -> None:
    payload = PIPELINE.dump(PIPE)
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        assert all(archive[name].dtype != object for name in archive.files)
        assert json.loads(str(archive["spec"]))["stages"] == [[["impute", "standardise"], ["onehot"]]]
    table = rows((14.0, "red"), (None, "blue"))
    np.testing.assert_array_equal(PIPELINE.load(payload).predict_proba(table), PIPE.predict_proba(table))


def test_an_artifact_of_another_format_version_is_refused_by_its_version() -> None:
    arrays = PIPE.to_arrays()
    arrays["spec"] = np.array(json.dumps({**json.loads(str(arrays["spec"])), "format": 99}))
    with pytest.raises(ValueError, match="format 99, this library reads 1"):
        ArrayPipeline.from_arrays(arrays)


def test_request_rows_become_the_matrix_training_saw() -> None:
    class Row:
        def __init__(self, **values: Any) -> None:
            self.__dict__.update(values)

    numbers = matrix([Row(a=1, b=2.5), Row(a=None, b=0.0)], ["b", "a"])
    assert numbers.dtype == np.float64
    np.testing.assert_array_equal(numbers, [[2.5, 1.0], [0.0, np.nan]])
    mixed = matrix([Row(age=3.0, sex="male")], ["age", "sex"])
    assert mixed.dtype == object and mixed.tolist() == [[3.0, "male"]]
    assert matrix([], ["age", "sex"]).shape == (0, 2)
