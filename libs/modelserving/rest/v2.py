"""The Open Inference Protocol (v2), as KServe, Seldon MLServer and Triton clients speak it.

Every service gets these routes from its `ModelService` alone:

    GET  /v2                                  server metadata
    GET  /v2/health/live, /v2/health/ready    server health
    GET  /v2/models/{name}[/versions/{v}]     model metadata: inputs and outputs
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer

Inputs become the service's typed rows, validated by the same pydantic model as
its typed route: either one input per field (as MLServer's pandas codec sends a
table; BYTES for strings) or, for services that declare `v2_tensor_input`, one
numeric [N, features] tensor. The typed response's list of predictions becomes
one output per field. The routes' errors are the protocol's `{"error": "..."}`
(`ProtocolRoute`); the model routes take the service's auth dependency, if any.
Tensors may also travel as binary data after the JSON (`modelserving.protocol.binary`).
"""

import math
import types
import typing
from collections.abc import Callable, Coroutine, Sequence
from enum import Enum
from typing import Annotated, Any, Literal, NotRequired

from fastapi import FastAPI, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.routing import Match
from typing_extensions import TypedDict  # noqa: UP035 (pydantic needs this one before Python 3.12)

from modelserving.http.admission import admitted
from modelserving.http.auth import UNAUTHORIZED
from modelserving.http.bodies import documented_body, json_body, media_type, schema_components, validate_json
from modelserving.http.docs import extend_openapi
from modelserving.http.errors import field_path, retry_after, validation_failures
from modelserving.protocol import binary as binary_tensors
from modelserving.runtime.admission import Refused, Ticket
from modelserving.runtime.dataplane import DataPlane
from modelserving.runtime.logs import request_id
from modelserving.service import ModelService, prediction_list_field

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip
INTEGERS = frozenset({"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"})
FLOATS = frozenset({"FP16", "FP32", "FP64"})
# What each Python field type accepts, and the datatype metadata declares for it.
ACCEPTED: dict[type, tuple[frozenset[str], Datatype]] = {
    bool: (frozenset({"BOOL"}), "BOOL"),
    int: (INTEGERS, "INT64"),
    float: (FLOATS | INTEGERS, "FP64"),
    str: (frozenset({"BYTES"}), "BYTES"),
}
Data = list[Any]
# A request's limits (REST bodies here, gRPC messages in modelserving.grpc.server).
MAX_INPUTS, MAX_NAME, MAX_DIMENSIONS = 1024, 256, 8
EXTENSIONS = ["binary_tensor_data"]  # the server metadata's list of protocol extensions
_JSON: TypeAdapter[Any] = TypeAdapter(Any)  # serialises plain values in pydantic-core
# What a binary request may declare itself as (tritonclient sends none).
_BINARY_MEDIA_TYPES = {"application/octet-stream", "application/json"}
_METHODS = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "PATCH",
    "DELETE",
    "OPTIONS",
]


class TensorMetadata(BaseModel):
    name: str = Field(examples=["Pclass"])
    datatype: Datatype = Field(examples=["INT64"])
    shape: list[int] = Field(examples=[[-1]], description="-1 marks a dimension of any size.")
    parameters: dict[str, Any] | None = None


class ServerMetadata(BaseModel):
    name: str = Field(examples=["titanic"])
    version: str = Field(examples=["3f2c1e0"])
    extensions: list[str] = Field(examples=[[]])


class ModelMetadata(BaseModel):
    name: str = Field(examples=["titanic"])
    versions: list[str] = Field(examples=[["1.0.0"]])
    platform: str = Field(examples=["scikit-learn"])
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


# The request's parts are TypedDicts: pydantic-core validates them into plain dicts, which for
# a request of many one-element inputs costs a quarter less than a model instance per input.
class _Tensor(TypedDict):
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME, examples=["Pclass"])]
    shape: Annotated[
        list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=MAX_DIMENSIONS, examples=[[2]])
    ]
    datatype: Annotated[Datatype, Field(examples=["INT64"])]
    parameters: NotRequired[dict[str, Any] | None]


class RequestInput(_Tensor):
    data: Annotated[Data, Field(description="Row-major elements, flat or nested.", examples=[[3, 1]])]


class BinaryRequestInput(_Tensor):
    """An input of a binary request: its data may follow the JSON (binary_tensors)."""

    data: NotRequired[Data]


class RequestOutput(TypedDict):
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
    parameters: NotRequired[dict[str, Any] | None]


class _Request(TypedDict):
    id: NotRequired[Annotated[str, Field(max_length=MAX_NAME)] | None]
    parameters: NotRequired[dict[str, Any] | None]
    outputs: NotRequired[list[RequestOutput] | None]


class InferenceRequest(_Request):
    """A v2 request; each service's infer route documents an example made of its own inputs."""

    inputs: Annotated[list[RequestInput], Field(min_length=1, max_length=MAX_INPUTS)]


class BinaryInferenceRequest(_Request):
    """The JSON of a request with binary tensor data (binary_tensors)."""

    inputs: Annotated[list[BinaryRequestInput], Field(min_length=1, max_length=MAX_INPUTS)]


INFERENCE_REQUEST: TypeAdapter[InferenceRequest] = TypeAdapter(InferenceRequest)
BINARY_INFERENCE_REQUEST: TypeAdapter[BinaryInferenceRequest] = TypeAdapter(BinaryInferenceRequest)


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: Data


class InferenceResponse(BaseModel):
    model_name: str = Field(examples=["titanic"])
    model_version: str = Field(examples=["1.0.0"])
    id: str = Field(examples=["42"])
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class ProtocolError(Exception):
    """A request the protocol refuses; becomes `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def protocol_error_response(status: int, message: str) -> JSONResponse:
    """The Open Inference Protocol's error body: `{"error": message}`."""
    return JSONResponse({"error": message}, status_code=status)


class ProtocolRoute(APIRoute):
    """A v2 route: whatever it refuses answers in the protocol's own error body, and invalid
    requests are 400s (the protocol has no 422)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_in_protocol_terms(request: Request) -> Response:
            try:
                return await handle(request)
            except ProtocolError as error:
                return protocol_error_response(error.status, error.message)
            except Refused as refusal:
                response = protocol_error_response(refusal.status, refusal.message)
                response.headers.update(retry_after(refusal))
                return response
            except RequestValidationError as error:
                summary, _ = validation_failures(error)
                return protocol_error_response(400, summary)
            except HTTPException as error:
                response = protocol_error_response(error.status_code, str(error.detail))
                response.headers.update(error.headers or {})
                return response

        return handle_in_protocol_terms


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

    def check_row_counts(self, inputs: Sequence[_Tensor]) -> None:
        """ProtocolError(400) if an input declares more rows (its shape's first dimension) than a
        request may have: checked before any element is decoded or any row built."""
        for item in inputs:
            shape = item["shape"]
            if shape and shape[0] > self.max_rows:
                rows = f"{shape[0]} rows exceed the limit of {self.max_rows} rows per request"
                raise ProtocolError(400, f"input '{item['name']}': {rows}")

    def rows(self, request: InferenceRequest) -> list[Any]:
        """The typed rows the inputs describe, or ProtocolError(400) naming the input at fault."""
        inputs = request["inputs"]
        self.check_row_counts(inputs)
        tensor = self._tensor_input(inputs)
        raw_rows = self._rows_from_tensor(tensor, inputs) if tensor else self._rows_from_columns(inputs)
        if len(raw_rows) > self.max_rows:
            raise ProtocolError(
                400, f"{len(raw_rows)} rows exceed the limit of {self.max_rows} rows per request"
            )
        try:
            return self.rows_adapter.validate_python(raw_rows)  # type: ignore[no-any-return]
        except ValidationError as error:
            issue = error.errors()[0]
            row, *where = issue["loc"]
            field = field_path(where)
            source = f"{tensor['name']}' column '{field}" if tensor else field
            raise ProtocolError(400, f"input '{source}', row {row}: {issue['msg']}") from None

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
            raise ProtocolError(
                400,
                f"input '{item['name']}': shape {shape} needs {expected} elements, data has {len(elements)}",
            )
        return elements

    def _rows_from_tensor(self, tensor: RequestInput, inputs: Sequence[RequestInput]) -> list[dict[str, Any]]:
        name, shape, datatype = tensor["name"], tensor["shape"], tensor["datatype"]
        names = [item["name"] for item in inputs]
        if len(set(names)) != len(names):
            raise ProtocolError(400, "each input name may appear only once")
        width = len(self.fields)
        if len(shape) != 2 or shape[1] != width:
            raise ProtocolError(400, f"input '{name}': shape must be [N, {width}], got {shape}")
        if datatype not in FLOATS | INTEGERS:
            raise ProtocolError(400, f"input '{name}': datatype must be FP32 or FP64, got {datatype}")
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
                raise ProtocolError(400, f"input '{name}': shape must be [N] or [N, 1], got {shape}")
            flat = len(data) == shape[0] and (not data or type(data[0]) is not list)
            columns[name] = values = data if flat else self._elements(item)
            lengths.add(len(values))
        if len(columns) < len(self.fields) and not self.required <= columns.keys():
            raise ProtocolError(400, f"input '{min(self.required - columns.keys())}' is required")
        if len(lengths) > 1:
            rows = {name: len(values) for name, values in columns.items()}
            raise ProtocolError(400, f"inputs must all have the same number of rows, got {rows}")
        if lengths == {1}:
            return [{name: values[0] for name, values in columns.items()}]
        names = list(columns)
        return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]

    def _refusal(self, item: RequestInput, columns: dict[str, list[Any]]) -> ProtocolError:
        """Why `item` cannot be one of the columns (the fast path's checks, spelt out)."""
        name = item["name"]
        if name in columns:
            return ProtocolError(400, "each input name may appear only once")
        if name not in self.fields:
            expected = ", ".join(self.fields)
            return ProtocolError(400, f"input '{name}' is not an input of this model (expected: {expected})")
        declared = self.fields[name][1]
        return ProtocolError(400, f"input '{name}': datatype must be {declared}, got {item['datatype']}")

    def outputs_of(self, response: BaseModel, wanted: Sequence[RequestOutput] | None) -> list[dict[str, Any]]:
        """The protocol's outputs (`ResponseOutput`s as plain dicts, for one serialisation pass)."""
        predictions: list[BaseModel] = getattr(response, self.list_field)
        if not wanted:
            return [self._output(name, predictions) for name in self.outputs]
        names = [output["name"] for output in wanted]
        unknown = [name for name in names if name not in self.outputs]
        if unknown:
            raise ProtocolError(400, f"output '{unknown[0]}' is not an output of this model")
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


async def binary_body(request: Request) -> bytes:
    """The body of a request of the binary tensor data extension, unparsed; 415 for a content
    type it may not have."""
    media = media_type(request)
    if media is not None and media not in _BINARY_MEDIA_TYPES:
        raise ProtocolError(
            415, f"a binary request's content-type must be application/octet-stream, got {media!r}"
        )
    return await request.body()


def binary_request(body: bytes, header_length: str, codec: V2Codec) -> InferenceRequest:
    """A request of the binary tensor data extension, each input given its `data` (rows counted first)."""
    try:
        header, data = binary_tensors.split(body, header_length)
        inference: Any = validate_json(header, BINARY_INFERENCE_REQUEST)
        codec.check_row_counts(inference["inputs"])
        binary_tensors.attach_inputs(inference["inputs"], data)
    except binary_tensors.BinaryDataError as error:
        raise ProtocolError(400, str(error)) from None
    return inference  # type: ignore[no-any-return]


def _documented_infer(path: str, model_name: str, example: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI parameters, body and example of an infer route that parses its own request."""
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "title": title}}
        for name, title in (("model_name", "Model Name"), ("model_version", "Model Version"))
        if f"{{{name}}}" in path
    ]
    parameters[0]["example"] = model_name
    return {"parameters": parameters, **documented_body(INFERENCE_REQUEST, example=example)}


class ProtocolModel:
    """The protocol's answers about one data plane's model, whichever transport asks (the REST
    routes below, gRPC in `modelserving.grpc.server`); refusals are ProtocolErrors."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.service = plane.service
        self.codec = V2Codec(plane.service, plane.settings.max_batch_size)

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(
            name=self.service.name, version=self.plane.settings.app_revision, extensions=EXTENSIONS
        )

    def loaded_version(self, model_name: str, model_version: str | None) -> str:
        """The version serving `model_name`: 404 for another model or version, 503 before loading."""
        if model_name != self.service.name:
            raise ProtocolError(404, f"model '{model_name}' not found")
        version = self.plane.state.version
        if version is None:
            raise ProtocolError(503, f"model '{model_name}' is not ready")
        if model_version is not None and model_version != version:
            raise ProtocolError(404, f"model '{model_name}' version '{model_version}' not found")
        return version

    def metadata(self, model_name: str, model_version: str | None) -> ModelMetadata:
        version = self.loaded_version(model_name, model_version)
        return self.codec.metadata(version, self.plane.state.platform)

    def ready(self, model_name: str, model_version: str | None) -> bool:
        """Whether the model can be inferred: False while it loads, 404 for another model."""
        try:
            self.loaded_version(model_name, model_version)
        except ProtocolError as error:
            if error.status != 503:
                raise
            return False
        return self.plane.state.ready

    async def infer(self, inference: InferenceRequest, version: str, ticket: Ticket) -> dict[str, Any]:
        """The response body (an `InferenceResponse` as plain values) for `inference`, to the
        model at `version` (`loaded_version`'s, checked before the request was read), admitted
        with `ticket` (`DataPlane.admit`)."""
        rows = self.codec.rows(inference)
        response = await self.plane.infer(rows, ticket)
        outputs = self.codec.outputs_of(response, inference.get("outputs"))
        return {
            "model_name": self.service.name,
            "model_version": version,
            "id": request_id.get() if inference.get("id") is None else inference["id"],
            "outputs": outputs,
        }


def add_v2_routes(app: FastAPI, plane: DataPlane, protect: Sequence[Any] = ()) -> None:
    """The protocol's routes over `plane` on `app`; `protect`: dependencies of the model routes (auth)."""
    service = plane.service
    protocol = ProtocolModel(plane)
    codec = protocol.codec
    tags: list[str | Enum] = ["open inference protocol (v2)"]
    first_route = len(app.router.routes)

    def add_route(path: str, endpoint: Callable[..., Any], methods: Sequence[str], **options: Any) -> None:
        """A route of the protocol, on the app itself (see create_app)."""
        app.router.add_api_route(
            path, endpoint, methods=list(methods), route_class_override=ProtocolRoute, tags=tags, **options
        )

    errors: dict[int | str, dict[str, Any]] = {
        status: {"description": description, "content": {"application/json": {"example": {"error": "..."}}}}
        for status, description in {400: "Invalid request", 404: "Unknown model or version"}.items()
    }
    ModelName = Annotated[str, Path(examples=[service.name])]

    def readiness_of(model_name: str, model_version: str | None) -> Any:
        if protocol.ready(model_name, model_version):
            return ReadyResponse(ready=True)
        return JSONResponse(ReadyResponse(ready=False).model_dump(), status_code=503)

    async def infer(request: Request) -> Response:
        # The route reads its own path parameters and body (documented by _documented_infer): one
        # pydantic-core pass from bytes to InferenceRequest, without FastAPI's per-parameter work,
        # which cost more than the protocol's own conversion on a one-row request.
        parameters = request.path_params
        version = protocol.loaded_version(parameters["model_name"], parameters.get("model_version"))
        header_length = request.headers.get(binary_tensors.HEADER)
        raw = await (json_body(request) if header_length is None else binary_body(request))
        async with admitted(request, plane) as ticket:  # before parsing: a refusal costs little
            if header_length is None:
                inference = validate_json(raw, INFERENCE_REQUEST)
            else:
                inference = binary_request(raw, header_length, codec)
            body = await protocol.infer(inference, version, ticket)
        outputs = body["outputs"]
        if inference.get("parameters") or inference.get("outputs"):
            binary = binary_tensors.binary_outputs(
                inference.get("parameters"), inference.get("outputs"), (output["name"] for output in outputs)
            )
            if binary:
                data = binary_tensors.encode_outputs(outputs, binary)
                header = _JSON.dump_json(body)
                return Response(
                    header + data,
                    media_type="application/octet-stream",
                    headers={binary_tensors.HEADER: str(len(header))},
                )
        # An InferenceResponse made of the typed response's validated values, serialised once
        # (tests validate these bodies against InferenceResponse).
        return Response(_JSON.dump_json(body), media_type="application/json")

    # Two route shapes, each with exactly its own parameters: the loaded version, or a named one.
    def model_metadata(model_name: ModelName) -> ModelMetadata:
        return protocol.metadata(model_name, None)

    def model_version_metadata(model_name: ModelName, model_version: str) -> ModelMetadata:
        return protocol.metadata(model_name, model_version)

    def model_ready(model_name: ModelName) -> Any:
        return readiness_of(model_name, None)

    def model_version_ready(model_name: ModelName, model_version: str) -> Any:
        return readiness_of(model_name, model_version)

    # Optional protocol fields are left out rather than sent as null.
    options: dict[str, Any] = {
        "responses": {**errors, **(UNAUTHORIZED if protect else {})},
        "response_model_exclude_none": True,
        "dependencies": list(protect),
    }
    shapes: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = [
        ("/v2/models/{model_name}", model_metadata, model_ready),
        ("/v2/models/{model_name}/versions/{model_version}", model_version_metadata, model_version_ready),
    ]
    # Infer first: routes are matched in order, and it is the one under load.
    for base, _, _ in shapes:
        add_route(
            f"{base}/infer",
            infer,
            methods=["POST"],
            response_model=InferenceResponse,
            openapi_extra=_documented_infer(base, service.name, codec.example_request()),
            **options,
        )
    for base, metadata, ready in shapes:
        add_route(base, metadata, ["GET"], **options)
        add_route(f"{base}/ready", ready, ["GET"], **options)
    extend_openapi(app, schema_components(INFERENCE_REQUEST))

    def server_metadata() -> ServerMetadata:
        return protocol.server_metadata()

    def server_live() -> Any:
        if plane.live:
            return LiveResponse(live=True)
        return JSONResponse(LiveResponse(live=False).model_dump(), status_code=503)

    def server_ready() -> Any:
        if plane.state.ready:
            return ReadyResponse(ready=True)
        return JSONResponse(ReadyResponse(ready=False).model_dump(), status_code=503)

    add_route("/v2", server_metadata, ["GET"])
    add_route("/v2/health/live", server_live, ["GET"], responses={503: {"model": LiveResponse}})
    add_route("/v2/health/ready", server_ready, ["GET"], responses={503: {"model": ReadyResponse}})
    known_routes = app.router.routes[first_route:]

    def unknown_route(request: Request) -> Response:
        allowed = sorted(
            method
            for route in known_routes
            if isinstance(route, APIRoute) and route.matches(request.scope)[0] == Match.PARTIAL
            for method in route.methods or ()
        )
        if allowed:
            response = protocol_error_response(405, f"method {request.method} not allowed")
            response.headers["allow"] = ", ".join(allowed)
            return response
        raise ProtocolError(404, f"no route {request.url.path}")

    # Last: any other /v2 path, so that it too answers in the protocol's terms.
    add_route("/v2/{path:path}", unknown_route, _METHODS, include_in_schema=False)
