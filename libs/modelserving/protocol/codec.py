"""`V2Codec`: the protocol's tensors as a service's typed rows, and its typed predictions as the
protocol's outputs.

Inputs become the service's typed rows, validated by the same pydantic model as its typed
route: either one input per field (as MLServer's pandas codec sends a table; BYTES for
strings) or, for services that declare `v2_tensor_input`, one numeric [N, features] tensor.
The typed response's list of predictions becomes one output per field.
"""

import math
import types
import typing
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, TypeAdapter, ValidationError

from modelserving.protocol.errors import ProtocolError, field_path, invalid
from modelserving.protocol.types import (
    ACCEPTED,
    FLOATS,
    INTEGERS,
    Data,
    Datatype,
    InferenceRequest,
    ModelMetadata,
    RequestInput,
    RequestOutput,
    Tensor,
    TensorMetadata,
    check_rows,
)
from modelserving.service import ModelService, prediction_list_field


def _base_type(annotation: Any) -> type:
    """The scalar Python type behind Optional[...], Literal[...] and Annotated[...]."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _base_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return _base_type(next(arg for arg in typing.get_args(annotation) if arg is not type(None)))
    if origin is Literal:
        return type(typing.get_args(annotation)[0])
    return origin or annotation  # type: ignore[no-any-return]


def _field_kind(annotation: Any) -> tuple[frozenset[str], Datatype]:
    return ACCEPTED.get(_base_type(annotation), (frozenset({"BYTES"}), "BYTES"))


def _flatten(data: Data) -> list[Any]:
    flat: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for element in stack[-1]:
            if isinstance(element, list):
                stack.append(iter(element))
                break
            flat.append(element)
        else:
            stack.pop()
    return flat


class V2Codec:
    """Converts between protocol tensors and a service's typed rows and predictions."""

    def __init__(self, service: ModelService[Any, Any], max_rows: int) -> None:
        self.service = service
        self.max_rows = max_rows
        self.fields = {
            name: _field_kind(info.annotation) for name, info in service.item_type.model_fields.items()
        }
        self.accepted = {name: accepted for name, (accepted, _) in self.fields.items()}
        self.required = {name for name, info in service.item_type.model_fields.items() if info.is_required()}
        row_list: Any = list[service.item_type]  # type: ignore[name-defined]
        self.rows_adapter: TypeAdapter[list[Any]] = TypeAdapter(row_list)
        self.list_field, prediction_type = prediction_list_field(service.response_type)
        self.outputs = {
            name: self._output_kind(info.annotation) for name, info in prediction_type.model_fields.items()
        }
        if service.v2_tensor_input is not None:
            numeric = all(declared in ("INT64", "FP64") for _, declared in self.fields.values())
            if not numeric:
                raise TypeError(f"{service.name}: a v2 tensor input needs every row field to be numeric")

    @staticmethod
    def _output_kind(annotation: Any) -> tuple[Datatype, bool]:
        """(datatype, is it a per-row mapping that becomes a [N, K] tensor)."""
        if typing.get_origin(annotation) is dict:
            return _field_kind(typing.get_args(annotation)[1])[1], True
        return _field_kind(annotation)[1], False

    def example_request(self) -> dict[str, Any]:
        """The service's example rows as an infer request for it (fields some example leaves
        unknown are left out: v2 has no nulls)."""
        rows = [example.model_dump(mode="json") for example in self.service.examples]
        names = [name for name in self.fields if all(row.get(name) is not None for row in rows)]
        if self.service.v2_tensor_input is not None:
            tensor = {
                "name": self.service.v2_tensor_input,
                "shape": [len(rows), len(names)],
                "datatype": "FP64",
                "data": [[row[name] for name in names] for row in rows],
            }
            return {"id": "42", "inputs": [tensor]}
        inputs = [
            {
                "name": name,
                "shape": [len(rows)],
                "datatype": self.fields[name][1],
                "data": [row[name] for row in rows],
            }
            for name in names
        ]
        return {"id": "42", "inputs": inputs}

    def metadata(self, version: str, platform: str) -> ModelMetadata:
        if self.service.v2_tensor_input is not None:
            inputs = [
                TensorMetadata(
                    name=self.service.v2_tensor_input,
                    datatype="FP32",
                    shape=[-1, len(self.fields)],
                    parameters={"columns": list(self.fields), "accepts": ["FP32", "FP64"]},
                )
            ]
        else:
            inputs = [
                TensorMetadata(
                    name=name,
                    datatype=declared,
                    shape=[-1],
                    parameters=None if name in self.required else {"optional": True},
                )
                for name, (_, declared) in self.fields.items()
            ]
        outputs = [
            TensorMetadata(name=name, datatype=datatype, shape=[-1, -1] if mapping else [-1])
            for name, (datatype, mapping) in self.outputs.items()
        ]
        return ModelMetadata(
            name=self.service.name, versions=[version], platform=platform, inputs=inputs, outputs=outputs
        )

    def check_row_counts(self, inputs: Sequence[Tensor]) -> None:
        """ProtocolError if an input declares more rows than a request may have (`check_rows`)."""
        for item in inputs:
            check_rows(item["name"], item["shape"], self.max_rows)

    def rows(self, request: InferenceRequest) -> list[Any]:
        """The typed rows the inputs describe, or ProtocolError naming the input at fault."""
        inputs = request["inputs"]
        self.check_row_counts(inputs)
        tensor = self._tensor_input(inputs)
        raw_rows = self._rows_from_tensor(tensor, inputs) if tensor else self._rows_from_columns(inputs)
        if len(raw_rows) > self.max_rows:
            raise invalid(f"{len(raw_rows)} rows exceed the limit of {self.max_rows} rows per request")
        try:
            return self.rows_adapter.validate_python(raw_rows)  # type: ignore[no-any-return]
        except ValidationError as error:
            issue = error.errors()[0]
            row, *where = issue["loc"]
            field = field_path(where)
            source = f"{tensor['name']}' column '{field}" if tensor else field
            raise invalid(f"input '{source}', row {row}: {issue['msg']}") from None

    def _tensor_input(self, inputs: Sequence[RequestInput]) -> RequestInput | None:
        declared = self.service.v2_tensor_input
        if declared is None:
            return None
        named = [item for item in inputs if item["name"] == declared]
        if named:
            return named[0]
        if len(inputs) == 1 and inputs[0]["name"] not in self.fields:
            return inputs[0]  # the only input may have any name, as in MLServer
        return None

    @staticmethod
    def _elements(item: RequestInput) -> list[Any]:
        """The input's elements, flat; a nested first element means row-major nesting to undo."""
        data, shape = item["data"], item["shape"]
        elements = _flatten(data) if data and isinstance(data[0], list) else data
        expected = math.prod(shape)
        if len(elements) != expected:
            raise invalid(
                f"input '{item['name']}': shape {shape} needs {expected} elements, data has {len(elements)}",
            )
        return elements

    def _rows_from_tensor(self, tensor: RequestInput, inputs: Sequence[RequestInput]) -> list[dict[str, Any]]:
        name, shape, datatype = tensor["name"], tensor["shape"], tensor["datatype"]
        names = [item["name"] for item in inputs]
        if len(set(names)) != len(names):
            raise invalid("each input name may appear only once")
        width = len(self.fields)
        if len(shape) != 2 or shape[1] != width:
            raise invalid(f"input '{name}': shape must be [N, {width}], got {shape}")
        if datatype not in FLOATS | INTEGERS:
            raise invalid(f"input '{name}': datatype must be FP32 or FP64, got {datatype}")
        elements = self._elements(tensor)
        columns = list(self.fields)
        return [
            dict(zip(columns, elements[i : i + width], strict=True)) for i in range(0, len(elements), width)
        ]

    def _rows_from_columns(self, inputs: Sequence[RequestInput]) -> list[dict[str, Any]]:
        # The common case (known names, flat data of the declared length) in as few steps as
        # possible: on a one-row request this loop is most of what v2 costs over the typed route.
        columns: dict[str, list[Any]] = {}
        accepted = self.accepted
        lengths: set[int] = set()
        for item in inputs:
            name, shape, data = item["name"], item["shape"], item["data"]
            if item["datatype"] not in accepted.get(name, ()) or name in columns:
                raise self._refusal(item, columns)
            if len(shape) > 1 and (len(shape) > 2 or shape[1] != 1):
                raise invalid(f"input '{name}': shape must be [N] or [N, 1], got {shape}")
            flat = len(data) == shape[0] and (not data or type(data[0]) is not list)
            columns[name] = values = data if flat else self._elements(item)
            lengths.add(len(values))
        if len(columns) < len(self.fields) and not self.required <= columns.keys():
            raise invalid(f"input '{min(self.required - columns.keys())}' is required")
        if len(lengths) > 1:
            rows = {name: len(values) for name, values in columns.items()}
            raise invalid(f"inputs must all have the same number of rows, got {rows}")
        if lengths == {1}:
            return [{name: values[0] for name, values in columns.items()}]
        names = list(columns)
        return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]

    def _refusal(self, item: RequestInput, columns: dict[str, list[Any]]) -> ProtocolError:
        """Why `item` cannot be one of the columns (the fast path's checks, spelt out)."""
        name = item["name"]
        if name in columns:
            return invalid("each input name may appear only once")
        if name not in self.fields:
            expected = ", ".join(self.fields)
            return invalid(f"input '{name}' is not an input of this model (expected: {expected})")
        declared = self.fields[name][1]
        return invalid(f"input '{name}': datatype must be {declared}, got {item['datatype']}")

    def outputs_of(self, response: BaseModel, wanted: Sequence[RequestOutput] | None) -> list[dict[str, Any]]:
        """The protocol's outputs (`ResponseOutput`s as plain dicts, for one serialisation pass)."""
        predictions: list[BaseModel] = getattr(response, self.list_field)
        if not wanted:
            return [self._output(name, predictions) for name in self.outputs]
        names = [output["name"] for output in wanted]
        unknown = [name for name in names if name not in self.outputs]
        if unknown:
            raise invalid(f"output '{unknown[0]}' is not an output of this model")
        return [self._output(name, predictions) for name in names]

    def _output(self, name: str, predictions: Sequence[BaseModel]) -> dict[str, Any]:
        datatype, mapping = self.outputs[name]
        values = [getattr(prediction, name) for prediction in predictions]
        if not mapping:
            return {"name": name, "shape": [len(values)], "datatype": datatype, "data": values}
        labels = list(values[0]) if values else []
        return {
            "name": name,
            "shape": [len(values), len(labels)],
            "datatype": datatype,
            "parameters": {"labels": labels},
            "data": [value[label] for value in values for label in labels],
        }
