"""Bearer-token auth: it fails closed (no tokens, no start, unless ALLOW_UNAUTHENTICATED=true says
to serve without them); with tokens, prediction routes need one and probes do not."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from modelserving import ModelService, Settings
from modelserving.runtime.tokens import TokenError, configured_tokens, read_tokens
from modelserving.server.app import create_app

TOKEN = "s3cret-token-of-32-characters-00"
OTHER = "another-token-for-rotation-11111"
ROWS = [{"x": 1.5}]
V2_BODY = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.5]}]}
OPEN_PATHS = ["/livez", "/readyz", "/health_check", "/health_check/load_balancer", "/v2", "/v2/health/ready"]
OPEN_PATHS += ["/v2/health/live", "/docs", "/openapi.json"]


def started(service: ModelService[Any, Any], **settings: Any) -> Iterator[TestClient]:
    with TestClient(create_app(service, Settings(**settings))) as client:
        yield client


@pytest.fixture
def client(toy_service: ModelService[Any, Any]) -> Iterator[TestClient]:
    yield from started(toy_service, auth_token=SecretStr(TOKEN))


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def assert_401(response: Any, message: str) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert message in response.json()["error"]
    assert TOKEN not in response.text


def test_off_only_when_allowed(toy_service: ModelService[Any, Any]) -> None:
    for client in started(toy_service, allow_unauthenticated=True):
        assert client.post("/scale", json=ROWS).status_code == 200
        assert client.post("/v2/models/toy/infer", json=V2_BODY).status_code == 200
        assert "securitySchemes" not in client.get("/openapi.json").json()["components"]


def test_prediction_routes_need_the_token(client: TestClient) -> None:
    assert_401(client.post("/scale", json=ROWS), "missing bearer token")
    assert_401(
        client.post("/scale", json=ROWS, headers=bearer("wrong-token-of-enough-length")), "valid bearer"
    )
    assert_401(client.post("/scale", json=ROWS, headers={"authorization": f"Basic {TOKEN}"}), "valid bearer")
    assert_401(client.post("/scale", json=ROWS, headers=bearer(TOKEN[:-1])), "valid bearer")
    refused = client.post("/scale", json=ROWS)
    assert refused.json()["status"] == 401 and refused.json()["request_id"] == refused.headers["x-request-id"]
    assert client.post("/scale", json=ROWS, headers=bearer(TOKEN)).status_code == 200
    assert client.post("/scale", json=ROWS, headers={"Authorization": f"bearer  {TOKEN}"}).status_code == 200


def test_v2_model_routes_need_the_token_and_answer_in_the_protocols_body(client: TestClient) -> None:
    for method, path in [
        ("POST", "/v2/models/toy/infer"),
        ("GET", "/v2/models/toy"),
        ("GET", "/v2/models/x"),
    ]:
        response = client.request(method, path, json=V2_BODY)
        assert_401(response, "missing bearer token")
        assert list(response.json()) == ["error"]
    assert client.post("/v2/models/toy/infer", json=V2_BODY, headers=bearer(TOKEN)).status_code == 200


@pytest.mark.parametrize("path", OPEN_PATHS)
def test_probes_health_and_docs_stay_open(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_metrics_are_open_unless_configured(toy_service: ModelService[Any, Any]) -> None:
    for client in started(toy_service, auth_token=SecretStr(TOKEN)):
        assert client.get("/metrics").status_code == 200
    for client in started(toy_service, auth_token=SecretStr(TOKEN), metrics_require_token=True):
        assert_401(client.get("/metrics"), "missing bearer token")
        assert client.get("/metrics", headers=bearer(TOKEN)).status_code == 200


def test_every_token_of_the_file_opens_the_routes(
    toy_service: ModelService[Any, Any], tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN}\n\n  {OTHER}  \n")
    for client in started(toy_service, auth_token_file=tokens):
        assert client.post("/scale", json=ROWS, headers=bearer(TOKEN)).status_code == 200
        assert client.post("/scale", json=ROWS, headers=bearer(OTHER)).status_code == 200
        assert_401(client.post("/scale", json=ROWS, headers=bearer(f"{TOKEN}\n{OTHER}")), "valid bearer")


def test_openapi_declares_the_scheme_on_protected_operations_only(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"] == {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    secured = {
        (path, method)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if operation.get("security") == [{"bearerAuth": []}]
    }
    assert ("/scale", "post") in secured
    assert ("/v2/models/{model_name}/infer", "post") in secured
    assert not any(path in {"/readyz", "/livez", "/v2/health/ready", "/metrics"} for path, _ in secured)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "FileNotFoundError"), ("\n \n", "holds no token"), ("short\n", "at least 16 printable ASCII")],
)
def test_unusable_token_files_are_one_line_errors(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "tokens"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TokenError, match=message) as raised:
        read_tokens(path, None)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("environment", ["dev", "staging", "prod-eu", "anything"])
def test_without_tokens_a_worker_refuses_to_start_unless_allowed(
    toy_service: ModelService[Any, Any], environment: str
) -> None:
    with pytest.raises(TokenError, match="no AUTH_TOKEN_FILE or AUTH_TOKEN: give the tokens") as refused:
        create_app(toy_service, Settings(environment=environment, allow_unauthenticated=False))
    assert "ALLOW_UNAUTHENTICATED=true" in str(refused.value) and "\n" not in str(refused.value)
    assert configured_tokens(Settings(environment=environment, allow_unauthenticated=True)) == ()
    assert configured_tokens(
        Settings(environment=environment, allow_unauthenticated=False, auth_token=SecretStr(TOKEN))
    ) == (TOKEN.encode(),)


@pytest.mark.parametrize("environment", ["prod", "production", "PROD"])
def test_prod_without_tokens_refuses_to_start_even_when_allowed(
    toy_service: ModelService[Any, Any], environment: str
) -> None:
    with pytest.raises(TokenError, match=f"ENVIRONMENT={environment} needs AUTH_TOKEN_FILE or AUTH_TOKEN"):
        create_app(toy_service, Settings(environment=environment, allow_unauthenticated=True))
    assert configured_tokens(Settings(environment=environment, auth_token=SecretStr(TOKEN))) == (
        TOKEN.encode(),
    )
