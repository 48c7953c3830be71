"""Promises every model service keeps, checked on all of them.

The Open Inference Protocol (v2) route predicts exactly what the typed route
predicts for the same rows, in every input layout the service accepts; metrics
count each prediction and label routes by template only.
"""

import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from modelserving import ModelService, Settings
from modelserving.dev.testing import example_rows, registered_services
from modelserving.server.app import create_app

SERVICES = registered_services()
# Services whose features are all numbers also take them as one [N, features] tensor.
TENSOR_SERVICES = [service for service in SERVICES if service.v2_tensor_input]


def serve(service: ModelService[Any, Any]) -> Iterator[tuple[ModelService[Any, Any], TestClient]]:
    with TestClient(create_app(service, Settings())) as client:
        yield service, client


@pytest.fixture(params=SERVICES, ids=[service.name for service in SERVICES], scope="module")
def served(request: Any) -> Iterator[tuple[ModelService[Any, Any], TestClient]]:
    yield from serve(request.param)


@pytest.fixture(params=TENSOR_SERVICES, ids=[service.name for service in TENSOR_SERVICES], scope="module")
def served_tensor(request: Any) -> Iterator[tuple[ModelService[Any, Any], TestClient]]:
    yield from serve(request.param)


def test_numeric_services_take_a_tensor() -> None:
    tensor_services = {service.name for service in TENSOR_SERVICES}
    assert {"iris", "diabetes"} <= tensor_services
    assert "titanic" not in tensor_services  # names and categories: one v2 input per field


def typed_outputs(service: ModelService[Any, Any], client: TestClient, rows: list[dict[str, Any]]) -> Any:
    response = client.post(service.predict_path, json=rows)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def v2_infer(client: TestClient, service: ModelService[Any, Any], inputs: list[dict[str, Any]]) -> Any:
    response = client.post(f"/v2/models/{service.name}/infer", json={"id": "same-rows", "inputs": inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["id"]) == (service.name, "same-rows")
    return body["outputs"]


def as_predictions(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """v2 output tensors back into the typed route's list of per-row objects."""
    count = outputs[0]["shape"][0]
    rows: list[dict[str, Any]] = [{} for _ in range(count)]
    for output in outputs:
        labels = (output.get("parameters") or {}).get("labels")
        for index, row in enumerate(rows):
            if labels:
                width = len(labels)
                row[output["name"]] = dict(
                    zip(labels, output["data"][index * width : (index + 1) * width], strict=True)
                )
            else:
                row[output["name"]] = output["data"][index]
    return rows


def columns_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as v2 inputs, one per field (BYTES for strings)."""

    def datatype(value: Any) -> str:
        return "BYTES" if isinstance(value, str) else ("INT64" if isinstance(value, int) else "FP64")

    return [
        {"name": name, "shape": [len(rows)], "datatype": datatype(value), "data": [row[name] for row in rows]}
        for name, value in rows[0].items()
    ]


def test_v2_columns_predict_what_the_typed_route_predicts(
    served: tuple[ModelService[Any, Any], TestClient]
) -> None:
    service, client = served
    rows = example_rows(service)
    assert as_predictions(v2_infer(client, service, columns_of(rows))) == typed_outputs(service, client, rows)


def test_a_missing_or_uneven_column_is_a_400_naming_it(
    served: tuple[ModelService[Any, Any], TestClient]
) -> None:
    service, client = served
    rows = example_rows(service)
    inputs = columns_of(rows)
    required = next(item for item in inputs if service.item_type.model_fields[item["name"]].is_required())
    longer = {**required, "shape": [len(rows) + 1], "data": [*required["data"], required["data"][0]]}
    for changed, mention in [
        ([item for item in inputs if item is not required], f"input '{required['name']}' is required"),
        ([longer if item is required else item for item in inputs], "must all have the same number of rows"),
    ]:
        response = client.post(f"/v2/models/{service.name}/infer", json={"inputs": changed})
        assert response.status_code == 400
        assert mention in response.json()["error"]


# The binary tensor data extension's layouts, by datatype (little-endian; BYTES length-prefixed).
PACK = {"INT64": "q", "FP64": "d", "FP32": "f", "BOOL": "?"}


def packed(datatype: str, values: list[Any]) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(value.encode())) + value.encode() for value in values)
    return struct.pack(f"<{len(values)}{PACK[datatype]}", *values)


def unpacked(datatype: str, data: bytes) -> list[Any]:
    if datatype == "BYTES":
        values, offset = [], 0
        while offset < len(data):
            (length,) = struct.unpack_from("<I", data, offset)
            values.append(data[offset + 4 : offset + 4 + length].decode())
            offset += 4 + length
        return values
    return list(struct.unpack(f"<{len(data) // struct.calcsize(PACK[datatype])}{PACK[datatype]}", data))


def test_binary_tensors_predict_what_the_typed_route_predicts(
    served: tuple[ModelService[Any, Any], TestClient]
) -> None:
    """Every input as binary data after the JSON, every output asked back as binary."""
    service, client = served
    rows = example_rows(service)
    inputs, data = [], b""
    for item in columns_of(rows):
        chunk = packed(item["datatype"], item.pop("data"))
        inputs.append({**item, "parameters": {"binary_data_size": len(chunk)}})
        data += chunk
    header = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    response = client.post(
        f"/v2/models/{service.name}/infer",
        content=header + data,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    outputs, offset = json.loads(response.content[:length])["outputs"], length
    for output in outputs:
        size = output["parameters"].pop("binary_data_size")
        output["data"] = unpacked(output["datatype"], response.content[offset : offset + size])
        offset += size
    assert offset == len(response.content)
    assert as_predictions(outputs) == typed_outputs(service, client, rows)


def test_v2_tensor_predicts_what_the_typed_route_predicts(
    served_tensor: tuple[ModelService[Any, Any], TestClient],
) -> None:
    service, client = served_tensor
    (declared,) = client.get(f"/v2/models/{service.name}").json()["inputs"]
    rows = example_rows(service)
    columns = declared["parameters"]["columns"]
    nested = [[row[column] for column in columns] for row in rows]
    for name in (declared["name"], "any-name"):
        for datatype in ("FP32", "FP64"):
            tensor = {"name": name, "shape": [len(rows), len(columns)], "datatype": datatype, "data": nested}
            assert as_predictions(v2_infer(client, service, [tensor])) == typed_outputs(service, client, rows)


def test_the_documented_v2_example_is_served(served: tuple[ModelService[Any, Any], TestClient]) -> None:
    service, client = served
    infer = "/v2/models/{model_name}/infer"
    operation = client.get("/openapi.json").json()["paths"][infer]["post"]
    example = operation["requestBody"]["content"]["application/json"]["example"]
    typed = typed_outputs(service, client, example_rows(service))
    assert as_predictions(v2_infer(client, service, example["inputs"])) == typed


def test_wrong_datatype_is_a_400_naming_the_input(served: tuple[ModelService[Any, Any], TestClient]) -> None:
    service, client = served
    first = client.get(f"/v2/models/{service.name}").json()["inputs"][0]
    width = first["shape"][1] if len(first["shape"]) == 2 else 1
    wrong = {"name": first["name"], "shape": [1, width], "datatype": "BOOL", "data": [True] * width}
    if width == 1:
        wrong["shape"] = [1]
    response = client.post(f"/v2/models/{service.name}/infer", json={"inputs": [wrong]})
    assert response.status_code == 400
    assert f"'{first['name']}'" in response.json()["error"]


def test_metrics_move_by_exactly_the_rows_predicted(
    served: tuple[ModelService[Any, Any], TestClient]
) -> None:
    service, client = served

    def predicted() -> float:
        text = client.get("/metrics").text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "model_predictions_total" and sample.labels["model"] == service.name
        )

    row = example_rows(service)[:1]
    before = predicted()
    for _ in range(10):
        typed_outputs(service, client, row)
    assert predicted() - before == 10
    text = client.get("/metrics").text
    assert f'route="{service.predict_path}"' in text
    assert f"/v2/models/{service.name}/" not in text  # only the template /v2/models/{model_name}/...


def test_inputs_are_counted_into_the_committed_cards_reference_bins_whichever_route(
    served: tuple[ModelService[Any, Any], TestClient]
) -> None:
    """Every service's committed card carries a reference distribution (each watched field of
    its rows, and its scores by its output's bins), and rows predicted over the typed route and
    the Open Inference Protocol are counted into its bins, once per watched field."""
    service, client = served
    plane = client.app.state.plane  # type: ignore[attr-defined]
    reference = plane.model.card.reference
    assert reference is not None, f"{service.name}: retrain, the committed card has no reference"
    assert set(reference.features) <= set(service.item_type.model_fields)
    assert reference.scores is not None and service.output is not None
    assert reference.scores.bins == tuple(service.output.bins)

    def counted() -> dict[str, float]:
        assert plane.drift.flush()
        text = client.get("/metrics").text
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "model_input_rows_total":
                    assert sample.labels["bin"] in reference.features[sample.labels["feature"]].bins
                    feature = sample.labels["feature"]
                    totals[feature] = totals.get(feature, 0) + sample.value
        return totals

    before = counted()
    assert set(before) == set(reference.features)  # every feature's bins there from load
    rows = example_rows(service)
    typed_outputs(service, client, rows)
    v2_infer(client, service, columns_of(rows))
    after = counted()
    assert {feature: after[feature] - before[feature] for feature in after} == dict.fromkeys(
        after, 2 * len(rows)
    )


def test_docs_list_every_operation_with_examples(served: tuple[ModelService[Any, Any], TestClient]) -> None:
    service, client = served
    schema = client.get("/openapi.json").json()
    body = schema["paths"][service.predict_path]["post"]["requestBody"]["content"]["application/json"]
    assert body["examples"]
    assert "/v2/models/{model_name}/infer" in schema["paths"]
    assert client.get("/docs").status_code == 200
