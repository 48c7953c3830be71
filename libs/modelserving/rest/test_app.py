import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import Field

from modelserving import ModelCard, ModelLoadError, ModelService, Settings
from modelserving.server.app import create_app
from modelserving.service import HealthKeys

LIMITS = Settings(max_batch_size=3, max_body_bytes=2048, app_revision="rev-42", environment="test")


@pytest.fixture
def client(toy_service: ModelService[Any, Any]) -> Iterator[TestClient]:
    with TestClient(create_app(toy_service, LIMITS)) as started:
        yield started


def assert_error_body(response_json: dict[str, Any], status: int) -> None:
    assert response_json["status"] == status
    assert isinstance(response_json["error"], str) and response_json["error"]
    assert response_json["request_id"]
    assert "Traceback" not in json.dumps(response_json)


def test_predicts_with_the_loaded_model(client: TestClient) -> None:
    response = client.post("/scale", json=[{"x": 1.5}, {"x": -2}])
    assert response.status_code == 200
    assert response.json() == {"predictions": [{"value": 4.5}, {"value": -6.0}], "version": "7.1"}


def test_root_redirects_to_docs(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code in (307, 308)
    assert response.headers["location"] == "/docs"
    assert client.get("/docs").status_code == 200


def test_behind_a_gateway_prefix_the_docs_and_links_carry_it(toy_service: ModelService[Any, Any]) -> None:
    with TestClient(create_app(toy_service, LIMITS.model_copy(update={"root_path": "/toy"}))) as client:
        # Through the gateway (prefix kept), and from inside the pod (no prefix: the probes).
        for path in ("/toy/scale", "/scale"):
            assert client.post(path, json=[{"x": 1}]).json()["predictions"] == [{"value": 3.0}], path
        assert client.get("/readyz").status_code == 200
        assert client.get("/toy/", follow_redirects=False).headers["location"] == "/toy/docs"
        page = client.get("/toy/docs").text
        assert "'/toy/openapi.json'" in page or '"/toy/openapi.json"' in page, page
        assert client.get("/toy/openapi.json").json()["servers"] == [{"url": "/toy"}]


def test_openapi_has_the_request_example_and_batch_limit(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/scale"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["maxItems"] == 3
    assert body["examples"] or body.get("example")


def test_health_check_reports_model_and_revision(client: TestClient) -> None:
    body = client.get("/health_check").json()
    assert list(body) == ["health", "booted_at", "model", "app_revision", "environment"]
    assert body["health"] == "OK"
    assert body["app_revision"] == "rev-42"
    assert body["model"] == {"name": "toy", "version": "7.1"}
    assert body["environment"] == "test"
    assert body["booted_at"]


def version_as_number(settings: Settings, card: ModelCard | None) -> dict[str, Any]:
    if card is not None and not card.version.isdigit():
        raise ModelLoadError(f"toy versions are numbers; the card says {card.version!r}")
    return {"revision": settings.app_revision, "toy_model_version": int(card.version) if card else None}


OLD_KEYS = HealthKeys(
    fields={"revision": (str, Field()), "toy_model_version": (int | None, Field())}, values=version_as_number
)


def test_a_services_own_health_keys_come_after_health_and_booted_at(
    toy_service: ModelService[Any, Any], model_dir: Path
) -> None:
    card = json.loads((model_dir / "model_card.json").read_text())
    (model_dir / "model_card.json").write_text(json.dumps({**card, "version": "20230228"}))
    with TestClient(create_app(replace(toy_service, health_keys=OLD_KEYS), LIMITS)) as client:
        body = client.get("/health_check").json()
        schema = client.get("/openapi.json").json()["components"]["schemas"]["HealthCheck"]
    assert list(body)[:4] == ["health", "booted_at", "revision", "toy_model_version"]
    assert (body["revision"], body["toy_model_version"]) == ("rev-42", 20230228)
    assert schema["properties"]["toy_model_version"]["anyOf"][0]["type"] == "integer"


def test_health_keys_that_cannot_be_made_stop_start_up(toy_service: ModelService[Any, Any]) -> None:
    app = create_app(replace(toy_service, health_keys=OLD_KEYS), LIMITS)
    with pytest.raises(ModelLoadError, match="toy versions are numbers; the card says '7.1'"), TestClient(
        app
    ):
        pass


def test_load_balancer_check_is_a_json_null(client: TestClient) -> None:
    response = client.get("/health_check/load_balancer")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() is None


def test_probes_when_ready(client: TestClient) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").json() == {"status": "ready"}


def test_not_ready_before_the_model_is_loaded(toy_service: ModelService[Any, Any]) -> None:
    client = TestClient(create_app(toy_service, LIMITS))  # no `with`: the lifespan has not run
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 503
    response = client.post("/scale", json=[{"x": 1}])
    assert response.status_code == 503
    assert_error_body(response.json(), 503)


def test_not_ready_after_shutdown(toy_service: ModelService[Any, Any]) -> None:
    client = TestClient(create_app(toy_service, LIMITS))
    with client:
        assert client.get("/readyz").status_code == 200
    assert client.get("/readyz").json() == {"status": "shutting down"}


def test_broken_model_fails_start_up(toy_service: ModelService[Any, Any], model_dir: Path) -> None:
    (model_dir / "model.joblib").write_bytes(b"tampered")
    with pytest.raises(ModelLoadError, match="sha256"), TestClient(create_app(toy_service, LIMITS)):
        pass


def test_validation_error_names_the_field(client: TestClient) -> None:
    response = client.post("/scale", json=[{"x": 1}, {"x": "many"}])
    assert response.status_code == 422
    body = response.json()
    assert_error_body(body, 422)
    assert body["fields"][0]["field"] == "body[1].x"
    assert "body[1].x" in body["error"]


@pytest.mark.parametrize("raw", [b'[{"x": NaN}]', b'[{"x": Infinity}]', b'[{"x": 1e400}]'])
def test_non_finite_numbers_are_rejected(client: TestClient, raw: bytes) -> None:
    response = client.post("/scale", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "body[0].x"


def test_malformed_json_is_a_422(client: TestClient) -> None:
    response = client.post("/scale", content=b'[{"x": ', headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert_error_body(response.json(), 422)


def test_missing_body_is_a_422(client: TestClient) -> None:
    response = client.post("/scale")
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "body"


def test_batch_over_the_limit_says_the_limit(client: TestClient) -> None:
    response = client.post("/scale", json=[{"x": 1}] * 4)
    assert response.status_code == 422
    assert "at most 3" in response.json()["error"]


def test_declared_oversize_body_gets_413(client: TestClient) -> None:
    response = client.post(
        "/scale", content=b"[" + b" " * 4096 + b"]", headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert_error_body(response.json(), 413)
    assert "2048 bytes" in response.json()["error"]


def test_streamed_oversize_body_gets_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(100):
            yield b'{"x": 1},' * 10

    response = client.post("/scale", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_unknown_route_is_a_json_404(client: TestClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert_error_body(response.json(), 404)


def test_wrong_method_is_a_json_405(client: TestClient) -> None:
    response = client.get("/scale")
    assert response.status_code == 405
    assert_error_body(response.json(), 405)


def test_request_id_is_echoed(client: TestClient) -> None:
    response = client.get("/livez", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    error = client.post("/scale", json=[{}], headers={"X-Request-ID": "abc-124"})
    assert error.json()["request_id"] == "abc-124"


@pytest.mark.parametrize("offered", [None, "", "has spaces", "x" * 200])
def test_request_id_is_made_when_absent_or_unusable(client: TestClient, offered: str | None) -> None:
    headers = {"X-Request-ID": offered} if offered is not None else {}
    made = client.get("/livez", headers=headers).headers["x-request-id"]
    assert made != offered and len(made) == 32


def test_access_log_is_one_json_record_per_request(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    from modelserving.runtime.logs import JsonFormatter

    with caplog.at_level(logging.INFO, logger="modelserving.access"):
        client.post("/scale", json=[{"x": 1}], headers={"X-Request-ID": "log-me"})
    records = [r for r in caplog.records if r.name == "modelserving.access"]
    assert len(records) == 1
    entry = json.loads(JsonFormatter().format(records[0]))
    assert entry["request_id"] == "log-me"
    assert (entry["method"], entry["path"], entry["status"]) == ("POST", "/scale", 200)
    assert entry["duration_ms"] >= 0
