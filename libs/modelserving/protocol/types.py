"""The Open Inference Protocol's (v2) messages, as KServe, Seldon MLServer and Triton define them,
with the limits every request is held to whichever transport brings it.

Requests are TypedDicts: pydantic-core validates a JSON body straight into plain dicts, which
for a request of many one-element inputs costs a quarter less than a model instance per input.
Responses and metadata are pydantic models (the REST routes document them).
"""

from typing import Annotated, Any, Literal, NotRequired, get_args

from pydantic import BaseModel, Field, TypeAdapter
from typing_extensions import TypedDict  # noqa: UP035 (pydantic needs this one before Python 3.12)

from modelserving.protocol.errors import invalid

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip
DATATYPES = frozenset(get_args(Datatype))
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
# A request's limits: REST bodies hold to them through the types below, gRPC messages through
# `check_tensor` and `check_request`.
MAX_INPUTS, MAX_NAME, MAX_DIMENSIONS = 1024, 256, 8
EXTENSIONS = ["binary_tensor_data"]  # the server metadata's list of protocol extensions


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


class Tensor(TypedDict):
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME, examples=["Pclass"])]
    shape: Annotated[
        list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=MAX_DIMENSIONS, examples=[[2]])
    ]
    datatype: Annotated[Datatype, Field(examples=["INT64"])]
    parameters: NotRequired[dict[str, Any] | None]


class RequestInput(Tensor):
    data: Annotated[Data, Field(description="Row-major elements, flat or nested.", examples=[[3, 1]])]


class BinaryRequestInput(Tensor):
    """An input of a binary request: its data may follow the JSON (`protocol.binary`)."""

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
    """The JSON of a request with binary tensor data (`protocol.binary`)."""

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


def check_tensor(index: int, name: str, datatype: str, shape: list[int], max_rows: int) -> None:
    """An input's name, datatype and shape against the limits `RequestInput` declares, and its
    rows against `max_rows`, for a transport that builds its requests itself (gRPC); checked
    before any element is decoded."""
    if not 1 <= len(name) <= MAX_NAME:
        raise invalid(f"inputs[{index}].name: 1 to {MAX_NAME} characters, got {len(name)}")
    if datatype not in DATATYPES:
        raise invalid(f"input '{name}': unknown datatype {datatype!r}")
    if not 1 <= len(shape) <= MAX_DIMENSIONS or min(shape) < 0:
        raise invalid(
            f"input '{name}': shape {shape} must have 1 to {MAX_DIMENSIONS} dimensions, none negative",
        )
    check_rows(name, shape, max_rows)


def check_rows(name: str, shape: list[int], max_rows: int) -> None:
    """ProtocolError if an input declares more rows (its shape's first dimension) than a request
    may have: checked before any element is decoded or any row built."""
    if shape and shape[0] > max_rows:
        raise invalid(
            f"input '{name}': {shape[0]} rows exceed the limit of {max_rows} rows per request",
        )


def check_request(inputs: int, request_id: str, outputs: list[str]) -> None:
    """A request's number of inputs, id and output names against `InferenceRequest`'s limits."""
    if not 1 <= inputs <= MAX_INPUTS:
        raise invalid(f"inputs: a request has 1 to {MAX_INPUTS} inputs, got {inputs}")
    if len(request_id) > MAX_NAME:
        raise invalid(f"id: at most {MAX_NAME} characters, got {len(request_id)}")
    if not all(1 <= len(name) <= MAX_NAME for name in outputs):
        raise invalid(f"outputs: each name has 1 to {MAX_NAME} characters")
