"""The Titanic API through an HTTP client: the shared contract, Titanic's fields, a model that has learned."""

from typing import Any

import pytest

from modelserving.dev.testing import ServiceClient, ServiceContract
from titanic.main import SERVICE

PASSENGER: dict[str, Any] = {
    "PassengerId": 892,
    "Pclass": 3,
    "Name": "Kelly, Mr. James",
    "Sex": "male",
    "Age": 34.5,
    "SibSp": 0,
    "Parch": 0,
    "Ticket": "330911",
    "Fare": 7.8292,
    "Cabin": None,
    "Embarked": "Q",
}


def with_changes(**changes: Any) -> dict[str, Any]:
    return {**PASSENGER, **changes}


def predictions(client: ServiceClient, passengers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.predict(passengers)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()["predictions"]
    return body


class TestTitanicApi(ServiceContract):
    service = SERVICE
    valid_row = PASSENGER
    invalid_values = (
        ("Pclass", 7),
        ("Pclass", "first"),
        ("Sex", "unknown"),
        ("Age", -1),
        ("Age", 121),
        ("Fare", -5),
        ("SibSp", -1),
        ("Parch", 1.5),
        ("Embarked", "X"),
        ("Name", ""),
        ("Name", "x" * 201),
        ("PassengerId", 10**100),
    )

    def test_survived_is_the_score_at_one_half(self, client: ServiceClient) -> None:
        woman = with_changes(PassengerId=893, Sex="female", Name="Wilkes, Mrs. James")
        for prediction in predictions(client, [PASSENGER, woman]):
            assert prediction["survived"] is (prediction["score"] >= 0.5)

    def test_the_model_has_learned_women_and_first_class_first(self, client: ServiceClient) -> None:
        rich_woman = with_changes(Pclass=1, Sex="female", Name="Smith, Mrs. Jane", Fare=80.0, Cabin="C85")
        poor_man = with_changes(Pclass=3, Sex="male", Name="Smith, Mr. John", Fare=7.25)
        scores = [p["score"] for p in predictions(client, [rich_woman, poor_man])]
        assert scores[0] > 0.8 > 0.2 > scores[1]

    @pytest.mark.parametrize("absent", ["Age", "Cabin", "Fare", "Embarked", "Ticket"])
    def test_unknown_values_may_be_absent(self, client: ServiceClient, absent: str) -> None:
        passenger = {key: value for key, value in PASSENGER.items() if key != absent}
        assert len(predictions(client, [passenger])) == 1

    def test_unknown_values_may_be_null(self, client: ServiceClient) -> None:
        passenger = with_changes(Age=None, Cabin=None, Fare=None, Embarked=None, Ticket=None)
        assert len(predictions(client, [passenger])) == 1

    def test_extra_fields_such_as_survived_are_ignored(self, client: ServiceClient) -> None:
        assert len(predictions(client, [with_changes(Survived=1)])) == 1

    def test_oversize_body_gets_413(self, client: ServiceClient) -> None:
        assert client.predict([with_changes(Ticket="x" * 40)] * 40_000).status_code == 413

    def test_openapi_documents_the_passenger_schema_with_examples(self, client: ServiceClient) -> None:
        schema = client.get("/openapi.json").json()
        passenger = schema["components"]["schemas"]["Passenger"]
        assert passenger["properties"]["Pclass"]["enum"] == [1, 2, 3]
        assert passenger["examples"][0]["Name"] == "Braund, Mr. Owen Harris"
        prediction = schema["components"]["schemas"]["SurvivalPrediction"]
        assert prediction["properties"]["survived"]["type"] == "boolean"
        operation = schema["paths"]["/predict_survival_by_passengers"]["post"]
        assert {"200", "413", "422"} <= set(operation["responses"])
