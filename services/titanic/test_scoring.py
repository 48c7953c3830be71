"""The served scorer gives every passenger the same features and score whatever the batch: a
large request is encoded a column at a time, a small one row by row, and both agree exactly."""

from types import SimpleNamespace

import numpy as np
import pytest

from modelserving import load_model
from titanic.features import load_training_data, passenger_records
from titanic.main import MODEL_DIR, SERVICE, prepare
from titanic.schemas import Passenger
from titanic.scoring import COLUMNS_FROM, SurvivalScorer
from titanic.train import DATA

ODD_PASSENGERS = [
    SimpleNamespace(
        PassengerId=5000,
        Pclass=None,
        Name="no comma",
        Sex=None,
        Age=None,
        SibSp=None,
        Parch=None,
        Ticket=None,
        Fare=None,
        Cabin=None,
        Embarked="X",
    ),
    SimpleNamespace(
        PassengerId=5001,
        Pclass=1,
        Name="Doe, Dr. J",
        Sex="female",
        Age=0.1,
        SibSp=0,
        Parch=0,
        Ticket="PC 17599",
        Fare=0,
        Cabin="C85",
        Embarked=None,
    ),
    SimpleNamespace(
        PassengerId=5002,
        Pclass=3,
        Name="Roe, Mme. A",
        Sex="male",
        Age=120,
        SibSp=8,
        Parch=6,
        Ticket="never seen",
        Fare=10000,
        Cabin=None,
        Embarked="S",
    ),
    Passenger(PassengerId=5003, Pclass=2, Name="Kelly, Mr. James", Sex="male", SibSp=0, Parch=0),
]


@pytest.fixture(scope="module")
def scorer() -> SurvivalScorer:
    model = prepare(load_model(MODEL_DIR, expected_name="titanic", artifact_format=SERVICE.artifact_format))
    assert isinstance(model.estimator, SurvivalScorer)
    return model.estimator


@pytest.fixture(scope="module")
def passengers() -> list[object]:
    """The 891 training passengers (gaps as None, as requests have them) and odd ones."""
    frame, _ = load_training_data(DATA)
    return [*passenger_records(frame), *ODD_PASSENGERS]


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
