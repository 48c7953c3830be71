"""`tritonclient.http`, Triton's own Python client, against every service over REST: with
binary tensors (its default) and with JSON tensors, in both directions. Each gives exactly
what the service's typed route answers for the same rows, and a refused request surfaces as
the client's `InferenceServerException` carrying the server's message."""

from collections.abc import Iterator
from typing import Any

import pytest
import tritonclient.http as triton  # type: ignore[import]  # no type information shipped
from tritonclient.utils import InferenceServerException  # type: ignore[import]

from clients.tensors import (
    as_fp32,
    as_predictions,
    first_required_field,
    inputs_for,
    tensor_input,
    typed_predictions,
)
from modelserving import ModelService
from modelserving.dev.testing import example_rows, registered_services, running_server

SERVICES = registered_services()


@pytest.fixture(params=SERVICES, ids=[service.name for service in SERVICES], scope="module")
def served(request: Any) -> Iterator[tuple[ModelService[Any, Any], str]]:
    service = request.param
    with running_server(f"{service.name}.main") as (_, url):
        yield service, url


def predictions(result: Any, count: int) -> list[dict[str, Any]]:
    outputs = [
        (output["name"], (output.get("parameters") or {}).get("labels"))
        for output in result.get_response()["outputs"]
    ]
    return as_predictions(result, outputs, count)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_gives_what_the_typed_route_gives(
    served: tuple[ModelService[Any, Any], str], binary: bool
) -> None:
    service, url = served
    rows = example_rows(service)
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(service.name)
    outputs = [
        triton.InferRequestedOutput(item["name"], binary_data=binary)
        for item in client.get_model_metadata(service.name)["outputs"]
    ]
    typed = typed_predictions(service, url, rows)
    result = client.infer(service.name, inputs_for(triton, rows, binary_data=binary), outputs=outputs)
    assert predictions(result, len(rows)) == typed
    # Without named outputs the client asks for every output as binary.
    result = client.infer(service.name, inputs_for(triton, rows, binary_data=binary))
    assert predictions(result, len(rows)) == typed
    if service.v2_tensor_input:
        floats = as_fp32(rows)
        (declared,) = client.get_model_metadata(service.name)["inputs"]
        tensor = tensor_input(triton, declared, declared["parameters"]["columns"], floats, binary_data=binary)
        result = client.infer(service.name, [tensor], outputs=outputs)
        assert predictions(result, len(rows)) == typed_predictions(service, url, floats)


def test_a_refused_request_is_the_clients_exception(served: tuple[ModelService[Any, Any], str]) -> None:
    service, url = served
    rows = example_rows(service)
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    missing = first_required_field(service, rows)
    inputs = inputs_for(triton, rows, binary_data=True)[1:]  # the first field left out
    with pytest.raises(InferenceServerException) as refused:
        client.infer(service.name, inputs)
    assert f"input '{missing}' is required" in str(refused.value)
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("no-such-model", inputs_for(triton, rows, binary_data=True))
    assert "not found" in str(unknown.value)
