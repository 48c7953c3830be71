"""`tritonclient.http`, Triton's own Python client, against every service over REST: with
binary tensors (its default) and with JSON tensors, in both directions. Each gives exactly
what the service's typed route answers for the same rows, and a refused request surfaces as
the client's `InferenceServerException` carrying the server's message."""

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton  # type: ignore[import]  # no type information shipped
from tritonclient.utils import InferenceServerException  # type: ignore[import]

from modelserving import ModelService
from modelserving.testing import example_rows, registered_services, running_server

SERVICES = registered_services()
NUMPY = {"BYTES": np.object_, "INT64": np.int64, "FP64": np.float64, "FP32": np.float32, "BOOL": np.bool_}


@pytest.fixture(params=SERVICES, ids=[service.name for service in SERVICES], scope="module")
def served(request: Any) -> Iterator[tuple[ModelService[Any, Any], str]]:
    service = request.param
    with running_server(f"{service.name}.main") as (_, url):
        yield service, url


def typed_predictions(service: ModelService[Any, Any], url: str, rows: list[dict[str, Any]]) -> Any:
    response = httpx.post(url + service.predict_path, json=rows)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def inputs_for(rows: list[dict[str, Any]], binary: bool) -> list[Any]:
    """One input per field (BYTES for strings), as MLServer's pandas codec sends a table."""
    inputs = []
    for name, example in rows[0].items():
        datatype = "BYTES" if isinstance(example, str) else "INT64" if isinstance(example, int) else "FP64"
        values = [row[name] for row in rows]
        array = np.array(
            [value.encode() for value in values] if datatype == "BYTES" else values, dtype=NUMPY[datatype]
        )
        tensor = triton.InferInput(name, [len(rows)], datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def tensor_input(
    client: Any, service: ModelService[Any, Any], rows: list[dict[str, Any]], binary: bool
) -> Any:
    """All features as the one FP32 [N, features] tensor the metadata declares."""
    (declared,) = client.get_model_metadata(service.name)["inputs"]
    columns = declared["parameters"]["columns"]
    tensor = triton.InferInput(declared["name"], [len(rows), len(columns)], "FP32")
    tensor.set_data_from_numpy(
        np.array([[row[c] for c in columns] for row in rows], dtype=np.float32), binary_data=binary
    )
    return tensor


def plain(value: Any) -> Any:
    return (
        value.decode()
        if isinstance(value, bytes)
        else value.item()
        if isinstance(value, np.generic)
        else value
    )


def as_predictions(result: Any, count: int) -> list[dict[str, Any]]:
    """The client's result back into the typed route's list of per-row objects."""
    rows: list[dict[str, Any]] = [{} for _ in range(count)]
    for output in result.get_response()["outputs"]:
        array = result.as_numpy(output["name"])
        labels = (output.get("parameters") or {}).get("labels")
        for index, row in enumerate(rows):
            if labels:
                row[output["name"]] = {
                    label: plain(value) for label, value in zip(labels, array[index], strict=True)
                }
            else:
                row[output["name"]] = plain(array[index])
    return rows


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
    result = client.infer(service.name, inputs_for(rows, binary), outputs=outputs)
    assert as_predictions(result, len(rows)) == typed
    # Without named outputs the client asks for every output as binary.
    assert as_predictions(client.infer(service.name, inputs_for(rows, binary)), len(rows)) == typed
    if service.v2_tensor_input:
        # FP32 carries the examples' values exactly only where they are binary fractions.
        floats = [{name: float(np.float32(value)) for name, value in row.items()} for row in rows]
        result = client.infer(service.name, [tensor_input(client, service, floats, binary)], outputs=outputs)
        assert as_predictions(result, len(rows)) == typed_predictions(service, url, floats)


def test_a_refused_request_is_the_clients_exception(served: tuple[ModelService[Any, Any], str]) -> None:
    service, url = served
    rows = example_rows(service)
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    inputs = inputs_for(rows, binary=True)[1:]  # the first field left out
    missing = next(iter(rows[0]))
    required = service.item_type.model_fields[missing].is_required()
    if not required:
        pytest.fail(f"{service.name}: its first example field {missing!r} is optional; choose a required one")
    with pytest.raises(InferenceServerException) as refused:
        client.infer(service.name, inputs)
    assert f"input '{missing}' is required" in str(refused.value)
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("no-such-model", inputs_for(rows, binary=True))
    assert "not found" in str(unknown.value)
