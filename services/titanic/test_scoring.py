"""The served scorer gives every passenger the same features and score whatever the batch: a
large request is encoded a column at a time, a small one row by row, and both agree exactly."""

import numpy as np
import pandas as pd
import pytest

from modelserving import load_model
from titanic.features import load_training_data, passenger_records
from titanic.main import MODEL_DIR, SERVICE, prepare
from titanic.scoring import COLUMNS_FROM, SurvivalScorer
from titanic.train import DATA


@pytest.fixture(scope="module")
def scorer() -> SurvivalScorer:
    model = prepare(load_model(MODEL_DIR, expected_name="titanic", artifact_format=SERVICE.artifact_format))
    assert isinstance(model.estimator, SurvivalScorer)
    return model.estimator


@pytest.fixture(scope="module")
def passengers(odd_passengers: pd.DataFrame) -> list[object]:
    """The 891 training passengers (gaps as None, as requests have them) and odd ones."""
    frame, _ = load_training_data(DATA)
    return passenger_records(pd.concat([frame, odd_passengers]))


def test_columns_and_rows_give_the_same_matrix(scorer: SurvivalScorer, passengers: list[object]) -> None:
    encoding = scorer.encoding
    by_row = np.array([encoding.row(passenger) for passenger in passengers])
    by_column = encoding.column_matrix(passengers)
    assert by_row.shape == (len(passengers), len(encoding.all_feature_names))
    assert np.array_equal(by_column, by_row)


def test_a_passenger_scores_the_same_alone_and_in_a_large_batch(
    scorer: SurvivalScorer, passengers: list[object]
) -> None:
    assert len(passengers) >= COLUMNS_FROM
    together = scorer.scores(passengers)
    alone = np.array([scorer.scores([passenger])[0] for passenger in passengers])
    assert np.abs(together - alone).max() < 1e-12
