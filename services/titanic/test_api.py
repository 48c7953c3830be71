"""The Titanic API through an HTTP client: the original contract, validation, limits."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelserving import Settings, create_app
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


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(SERVICE, Settings(max_batch_size=50, max_body_bytes=64 * 1024))) as started:
        yield started


def predict(client: TestClient, passengers: list[dict[str, Any]]) -> Any:
    return client.post("/predict_survival_by_passengers", json=passengers)


def with_changes(**changes: Any) -> dict[str, Any]:
    return {**PASSENGER, **changes}


def test_prediction_keeps_the_original_contract(client: TestClient) -> None:
    response = predict(
        client, [PASSENGER, with_changes(PassengerId=893, Sex="female", Name="Wilkes, Mrs. James")]
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"predictions", "metadata"}
    version = client.get("/health_check").json()["model"]["version"]
    assert body["metadata"] == {"titanic_model_version": version}
    assert [p["passenger_id"] for p in body["predictions"]] == [892, 893]
    for prediction in body["predictions"]:
        assert set(prediction) == {"passenger_id", "survived", "score"}
        assert 0.0 <= prediction["score"] <= 1.0
        assert prediction["survived"] == int(prediction["score"] >= 0.5)


def test_the_model_has_learned_women_and_first_class_first(client: TestClient) -> None:
    rich_woman = with_changes(Pclass=1, Sex="female", Name="Smith, Mrs. Jane", Fare=80.0, Cabin="C85")
    poor_man = with_changes(Pclass=3, Sex="male", Name="Smith, Mr. John", Fare=7.25)
    scores = [p["score"] for p in predict(client, [rich_woman, poor_man]).json()["predictions"]]
    assert scores[0] > 0.8 > 0.2 > scores[1]


@pytest.mark.parametrize("absent", ["Age", "Cabin", "Fare", "Embarked", "Ticket"])
def test_unknown_values_may_be_absent(client: TestClient, absent: str) -> None:
    passenger = {key: value for key, value in PASSENGER.items() if key not in (absent, "Cabin")}
    response = predict(client, [passenger])
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 1


def test_unknown_values_may_be_null(client: TestClient) -> None:
    passenger = with_changes(Age=None, Cabin=None, Fare=None, Embarked=None, Ticket=None)
    assert predict(client, [passenger]).status_code == 200


def test_extra_fields_such_as_survived_are_ignored(client: TestClient) -> None:
    assert predict(client, [with_changes(Survived=1)]).status_code == 200


def test_empty_list_gives_no_predictions(client: TestClient) -> None:
    response = predict(client, [])
    assert response.status_code == 200
    assert response.json()["predictions"] == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
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
        # Numbers must be JSON numbers: no booleans or numeric strings in their place.
        ("Fare", False),
        ("Age", "22"),
        ("SibSp", "1"),
    ],
)
def test_invalid_value_gets_a_422_naming_the_field(client: TestClient, field: str, value: Any) -> None:
    response = predict(client, [PASSENGER, with_changes(**{field: value})])
    assert response.status_code == 422
    body = response.json()
    assert [error["field"] for error in body["fields"]] == [f"body[1].{field}"]
    assert f"body[1].{field}" in body["error"]


@pytest.mark.parametrize("required", ["PassengerId", "Pclass", "Name", "Sex", "SibSp", "Parch"])
def test_missing_required_field_gets_a_422_naming_it(client: TestClient, required: str) -> None:
    passenger = {key: value for key, value in PASSENGER.items() if key != required}
    response = predict(client, [passenger])
    assert response.status_code == 422
    assert response.json()["fields"][0] == {
        "field": f"body[0].{required}",
        "message": "Field required",
        "type": "missing",
    }


def test_a_single_object_instead_of_a_list_is_a_422(client: TestClient) -> None:
    response = client.post("/predict_survival_by_passengers", json=PASSENGER)
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "body"


def test_batch_over_the_limit_is_refused(client: TestClient) -> None:
    response = predict(client, [PASSENGER] * 51)
    assert response.status_code == 422
    assert "at most 50" in response.json()["error"]


def test_oversize_body_gets_413(client: TestClient) -> None:
    response = predict(client, [with_changes(Ticket="x" * 40)] * 1000)
    assert response.status_code == 413


def test_probes_and_health(client: TestClient) -> None:
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200
    health = client.get("/health_check").json()
    assert health["model"]["name"] == "titanic"
    assert client.get("/health_check/load_balancer").content == b""


def test_openapi_documents_the_passenger_schema_with_examples(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    passenger = schema["components"]["schemas"]["Passenger"]
    assert passenger["properties"]["Pclass"]["enum"] == [1, 2, 3]
    assert passenger["examples"][0]["Name"] == "Braund, Mr. Owen Harris"
    operation = schema["paths"]["/predict_survival_by_passengers"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["examples"]
    assert {"200", "413", "422"} <= set(operation["responses"])
