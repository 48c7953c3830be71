"""The original Titanic service's contract, checked against the real server process.

Existing clients were written against the first, one-model service. Every key and
type it sent is kept (newer keys sit beside them); this test is that contract,
written down from the original's source, not from this code.
"""

import subprocess
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from modelserving.dev.testing import running_server

# The original's request fields and their types; all were required there.
ORIGINAL_REQUEST_FIELDS = {
    "PassengerId": int,
    "Pclass": int,
    "Name": str,
    "Sex": str,
    "Age": float,
    "SibSp": int,
    "Parch": int,
    "Ticket": str,
    "Fare": float,
    "Cabin": str,
    "Embarked": str,
}
# The original's example passenger.
MRS_BROWN = {
    "PassengerId": 1248,
    "Pclass": 1,
    "Name": "Brown, Mrs. John Murray (Caroline Lane Lamson)",
    "Sex": "female",
    "Age": 59.0,
    "SibSp": 2,
    "Parch": 0,
    "Ticket": "11769",
    "Fare": 51.4792,
    "Cabin": "C101",
    "Embarked": "S",
}
ORIGINAL_PREDICTION_TYPES = {"passenger_id": int, "survived": bool, "score": float}
SCORE_DECIMALS = 3
ENVIRONMENT = {
    "APP_REVISION": "c0ffee1",
    "AWS_REGION": "us-east-1",
    "K8S_ENV": "production",
    "PYTHON_ENV": "production",
}
# /health_check: key -> the environment variable it reports (None: not from the environment).
ORIGINAL_HEALTH_KEYS = {
    "aws_region": "AWS_REGION",
    "booted_at": None,
    "health": None,
    "k8s_env": "K8S_ENV",
    "python_env": "PYTHON_ENV",
    "titanic_model_version": None,
    "version": "APP_REVISION",
}
JSON_TYPES = {int: "integer", float: "number", str: "string"}


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    server: tuple[subprocess.Popen[str], str]
    with running_server("titanic.main", LOG_LEVEL="warning", **ENVIRONMENT) as server:
        yield server[1]


def exactly(value: Any, expected: type) -> bool:
    """`isinstance`, except that a JSON boolean is not an integer (as it is to Python)."""
    return isinstance(value, expected) and (expected is bool or not isinstance(value, bool))


def predict(url: str, passengers: list[dict[str, Any]]) -> dict[str, Any]:
    response = httpx.post(f"{url}/predict_survival_by_passengers", json=passengers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_request_of_the_original_fields_and_types_is_answered_with_its_keys_and_types(url: str) -> None:
    assert {field: type(value) for field, value in MRS_BROWN.items()} == ORIGINAL_REQUEST_FIELDS
    body = predict(url, [MRS_BROWN, {**MRS_BROWN, "PassengerId": 1249, "Age": 59}])
    assert set(body) == {"predictions", "metadata"}
    assert set(body["metadata"]) == {"titanic_model_version"}
    assert exactly(body["metadata"]["titanic_model_version"], int)
    assert [p["passenger_id"] for p in body["predictions"]] == [1248, 1249]
    for prediction in body["predictions"]:
        assert {key: type(value) for key, value in prediction.items()} == ORIGINAL_PREDICTION_TYPES
        assert 0 <= prediction["score"] <= 1
        assert round(prediction["score"], SCORE_DECIMALS) == prediction["score"]


def test_the_documented_schema_declares_the_original_types(url: str) -> None:
    schemas = httpx.get(f"{url}/openapi.json").json()["components"]["schemas"]
    passenger = schemas["Passenger"]["properties"]
    for field, python_type in ORIGINAL_REQUEST_FIELDS.items():
        declared = {option.get("type") for option in passenger[field].get("anyOf", [passenger[field]])}
        assert JSON_TYPES[python_type] in declared, (field, passenger[field])
    prediction = schemas["SurvivalPrediction"]["properties"]
    assert {name: prediction[name]["type"] for name in ORIGINAL_PREDICTION_TYPES} == {
        "passenger_id": "integer",
        "survived": "boolean",
        "score": "number",
    }


def test_an_empty_list_gives_an_empty_list(url: str) -> None:
    body = predict(url, [])
    assert body["predictions"] == []
    assert exactly(body["metadata"]["titanic_model_version"], int)


def test_health_check_has_the_original_keys_and_values(url: str) -> None:
    health = httpx.get(f"{url}/health_check").json()
    assert set(ORIGINAL_HEALTH_KEYS) <= set(health)
    assert health["health"] == "OK"
    for key, variable in ORIGINAL_HEALTH_KEYS.items():
        if variable is not None:
            assert health[key] == ENVIRONMENT[variable], key
    assert exactly(health["titanic_model_version"], int)
    assert health["titanic_model_version"] == predict(url, [])["metadata"]["titanic_model_version"]
    assert datetime.fromisoformat(health["booted_at"]).tzinfo is not None


def test_load_balancer_check_is_200_with_a_json_null(url: str) -> None:
    response = httpx.get(f"{url}/health_check/load_balancer")
    assert response.status_code == 200
    assert response.json() is None


def test_the_root_redirects_to_the_docs(url: str) -> None:
    response = httpx.get(f"{url}/", follow_redirects=False)
    assert response.is_redirect
    assert response.headers["location"] == "/docs"
    assert httpx.get(f"{url}/docs").status_code == 200
