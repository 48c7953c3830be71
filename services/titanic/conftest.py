"""Passengers unlike any in the training data, for the tests that compare served scores."""

import pandas as pd
import pytest


@pytest.fixture(scope="session")
def odd_passengers() -> pd.DataFrame:
    """Gaps everywhere, unknown categories, extreme values and names without a title, in
    train.csv's columns (without `Survived`)."""
    gaps = dict(Pclass=None, Name="Kelly, Mr. James", Sex=None, Age=None, SibSp=None, Parch=None)
    return pd.DataFrame(
        [
            dict(gaps, PassengerId=5000, Name="no comma", Ticket=None, Fare=None, Cabin=None, Embarked="X"),
            dict(
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
            dict(
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
            # Only what a request must send.
            dict(
                gaps,
                PassengerId=5003,
                Pclass=2,
                Sex="male",
                SibSp=0,
                Parch=0,
                Ticket=None,
                Fare=None,
                Cabin=None,
                Embarked=None,
            ),
        ]
    )
