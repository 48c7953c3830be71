"""What the Triton client tests share: the service's rows as the clients' input tensors, and
the clients' results back as the typed route's predictions."""

import json
from typing import Any

import httpx
import numpy as np

from modelserving import ModelService

NUMPY = {"BYTES": np.object_, "INT64": np.int64, "FP64": np.float64, "FP32": np.float32, "BOOL": np.bool_}


def typed_predictions(service: ModelService[Any, Any], url: str, rows: list[dict[str, Any]]) -> Any:
    response = httpx.post(url + service.predict_path, json=rows)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def inputs_for(client_module: Any, rows: list[dict[str, Any]], **options: Any) -> list[Any]:
    """One input per field (BYTES for strings), as MLServer's pandas codec sends a table;
    `options` go to the client's `set_data_from_numpy`."""
    inputs = []
    for name, example in rows[0].items():
        datatype = "BYTES" if isinstance(example, str) else "INT64" if isinstance(example, int) else "FP64"
        values = [row[name] for row in rows]
        array = np.array(
            [value.encode() for value in values] if datatype == "BYTES" else values, dtype=NUMPY[datatype]
        )
        tensor = client_module.InferInput(name, [len(rows)], datatype)
        tensor.set_data_from_numpy(array, **options)
        inputs.append(tensor)
    return inputs


def tensor_input(
    client_module: Any,
    declared: dict[str, Any],
    columns: list[str],
    rows: list[dict[str, Any]],
    **options: Any,
) -> Any:
    """All features as the one FP32 [N, features] tensor the metadata declares."""
    tensor = client_module.InferInput(declared["name"], [len(rows), len(columns)], "FP32")
    tensor.set_data_from_numpy(
        np.array([[row[c] for c in columns] for row in rows], dtype=np.float32), **options
    )
    return tensor


def as_fp32(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as FP32 carries them: exact only where the values are binary fractions."""
    return [{name: float(np.float32(value)) for name, value in row.items()} for row in rows]


def plain(value: Any) -> Any:
    return (
        value.decode()
        if isinstance(value, bytes)
        else value.item()
        if isinstance(value, np.generic)
        else value
    )


def as_predictions(
    result: Any, outputs: list[tuple[str, list[str] | None]], count: int
) -> list[dict[str, Any]]:
    """The client's result back into the typed route's list of per-row objects; `outputs`: each
    output's name and, for a [N, K] output, its labels."""
    rows: list[dict[str, Any]] = [{} for _ in range(count)]
    for name, labels in outputs:
        array = result.as_numpy(name)
        for index, row in enumerate(rows):
            if labels:
                row[name] = {label: plain(value) for label, value in zip(labels, array[index], strict=True)}
            else:
                row[name] = plain(array[index])
    return rows


def grpc_predictions(result: Any, count: int) -> list[dict[str, Any]]:
    """A `tritonclient.grpc` result as the typed route's predictions (labels: a JSON parameter)."""
    outputs = [
        (
            output.name,
            json.loads(output.parameters["labels"].string_param) if "labels" in output.parameters else None,
        )
        for output in result.get_response().outputs
    ]
    return as_predictions(result, outputs, count)


def first_required_field(service: ModelService[Any, Any], rows: list[dict[str, Any]]) -> str:
    """The field the refusal tests leave out: the examples' first, which must be required."""
    missing = next(iter(rows[0]))
    if not service.item_type.model_fields[missing].is_required():
        raise AssertionError(
            f"{service.name}: its first example field {missing!r} is optional; choose another"
        )
    return missing
