"""`tritonclient.grpc`, Triton's own gRPC client, against every service's gRPC API (GRPC_PORT):
health, metadata and inference give what the REST API gives (the inferences exactly the typed
route's predictions, for one input per field and for a service's tensor input), and refusals
surface as the client's `InferenceServerException` with the gRPC status and the server's
message, auth included."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import tritonclient.grpc as triton  # type: ignore[import]  # no type information shipped
from tritonclient.utils import InferenceServerException  # type: ignore[import]

from clients.tensors import (
    as_fp32,
    first_required_field,
    grpc_predictions,
    inputs_for,
    tensor_input,
    typed_predictions,
)
from modelserving import ModelService
from modelserving.dev.testing import example_rows, free_port, raised, registered_services, running_server

SERVICES = registered_services()
TOKEN = "grpc-test-token-0123456789"


@pytest.fixture(params=SERVICES, ids=[service.name for service in SERVICES], scope="module")
def served(request: Any) -> Iterator[tuple[ModelService[Any, Any], str, Any]]:
    """The service, its REST URL, and a gRPC client of it."""
    service = request.param
    port = free_port()
    with running_server(f"{service.name}.main", GRPC_PORT=str(port)) as (_, url):
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        yield service, url, client
        client.close()


def test_health_and_metadata_are_the_rest_apis(served: tuple[ModelService[Any, Any], str, Any]) -> None:
    service, url, client = served
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(service.name)
    server = client.get_server_metadata(as_json=True)
    assert server == httpx.get(f"{url}/v2").json()
    model = client.get_model_metadata(service.name, as_json=True)
    rest = httpx.get(f"{url}/v2/models/{service.name}").json()
    for key in ("name", "versions", "platform"):
        assert model[key] == rest[key]
    for side in ("inputs", "outputs"):
        # JSON of a protobuf message: int64 as strings.
        grpc_tensors = [(t["name"], t["datatype"], [int(size) for size in t["shape"]]) for t in model[side]]
        assert grpc_tensors == [(t["name"], t["datatype"], t["shape"]) for t in rest[side]]


def test_infer_gives_what_the_typed_route_gives(served: tuple[ModelService[Any, Any], str, Any]) -> None:
    service, url, client = served
    rows = example_rows(service)
    typed = typed_predictions(service, url, rows)
    result = client.infer(service.name, inputs_for(triton, rows), request_id="grpc-42")
    assert result.get_response().id == "grpc-42"
    assert grpc_predictions(result, len(rows)) == typed
    named = [triton.InferRequestedOutput(name) for name in reversed(typed[0])]
    result = client.infer(service.name, inputs_for(triton, rows), outputs=named)
    assert [output.name for output in result.get_response().outputs] == list(reversed(typed[0]))
    assert grpc_predictions(result, len(rows)) == typed
    if service.v2_tensor_input:
        floats = as_fp32(rows)
        metadata = client.get_model_metadata(service.name, as_json=True)
        rest = httpx.get(f"{url}/v2/models/{service.name}").json()
        (declared,) = metadata["inputs"]
        tensor = tensor_input(triton, declared, rest["inputs"][0]["parameters"]["columns"], floats)
        result = client.infer(service.name, [tensor])
        assert grpc_predictions(result, len(rows)) == typed_predictions(service, url, floats)


def test_a_refused_request_is_the_clients_exception(served: tuple[ModelService[Any, Any], str, Any]) -> None:
    service, _, client = served
    rows = example_rows(service)
    missing = first_required_field(service, rows)
    with pytest.raises(InferenceServerException) as refused:
        client.infer(service.name, inputs_for(triton, rows)[1:])  # the first field left out
    assert raised(refused).status() == "StatusCode.INVALID_ARGUMENT"
    assert f"input '{missing}' is required" in raised(refused).message()
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("no-such-model", inputs_for(triton, rows))
    assert raised(unknown).status() == "StatusCode.NOT_FOUND"
    assert "model 'no-such-model' not found" in raised(unknown).message()


def test_the_model_rpcs_need_the_token_when_auth_is_on() -> None:
    service = SERVICES[0]
    rows = example_rows(service)
    port = free_port()
    with running_server(f"{service.name}.main", GRPC_PORT=str(port), AUTH_TOKEN=TOKEN):
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_server_live()  # server health stays open, as on REST
        for headers, message in [(None, "missing bearer token"), ({"authorization": "Bearer nope"}, "valid")]:
            with pytest.raises(InferenceServerException) as refused:
                client.infer(service.name, inputs_for(triton, rows), headers=headers)
            assert raised(refused).status() == "StatusCode.UNAUTHENTICATED"
            assert message in raised(refused).message()
        result = client.infer(
            service.name, inputs_for(triton, rows), headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert len(result.as_numpy(result.get_response().outputs[0].name)) == len(rows)
