"""Protobuf messages of `inference.GRPCInferenceService` to the protocol's types and back.

Inputs may carry their elements in `contents` or in `raw_input_contents` (the binary layout of
`modelserving.protocol.binary`, which tritonclient sends); outputs always go back in
`raw_output_contents`, as Triton sends them and tritonclient reads them. A [N, K] output's
labels travel as its `labels` parameter, a JSON list in a string.
"""

from __future__ import annotations

import json
import math
from typing import Any

from inference_grpc import grpc_predict_v2_pb2 as pb  # pants: no-infer-dep (compiled in the build)

from modelserving.protocol import binary
from modelserving.protocol.errors import invalid
from modelserving.protocol.types import (
    InferenceRequest,
    RequestInput,
    TensorMetadata,
    check_request,
    check_tensor,
)

# Where InferTensorContents keeps each datatype's elements (FP16 travels only as raw contents).
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def inference_request(message: pb.ModelInferRequest, max_rows: int) -> InferenceRequest:
    """The protocol's request for `message`, held to the limits a JSON body is (`check_request`,
    `check_tensor`): row and element counts are checked before any element is decoded."""
    raw = message.raw_input_contents
    check_request(len(message.inputs), message.id, [output.name for output in message.outputs])
    if raw and len(raw) != len(message.inputs):
        raise invalid(f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs")
    inputs: list[RequestInput] = []
    for index, tensor in enumerate(message.inputs):
        name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
        check_tensor(index, name, datatype, shape, max_rows)
        count = math.prod(shape)
        try:
            if raw:
                data = binary.decode(name, datatype, count, raw[index])
            elif datatype not in CONTENTS:
                raise invalid(f"input '{name}': {datatype} elements travel in raw_input_contents")
            else:
                elements = getattr(tensor.contents, CONTENTS[datatype])
                if len(elements) != count:
                    raise invalid(
                        f"input '{name}': shape {shape} needs {count} elements, data has {len(elements)}"
                    )
                data = [element.decode() for element in elements] if datatype == "BYTES" else list(elements)
        except binary.BinaryDataError as error:
            raise invalid(str(error)) from None
        except UnicodeDecodeError:
            raise invalid(f"input '{name}': a BYTES element is not UTF-8 text") from None
        item: Any = {"name": name, "shape": shape, "datatype": datatype, "data": data}
        inputs.append(item)
    request: InferenceRequest = {"inputs": inputs}
    if message.id:
        request["id"] = message.id
    if message.outputs:
        request["outputs"] = [{"name": output.name} for output in message.outputs]
    return request


def infer_response(body: dict[str, Any]) -> pb.ModelInferResponse:
    """`ProtocolModel.infer`'s body as the RPC's response, every output's elements raw."""
    response = pb.ModelInferResponse(
        model_name=body["model_name"], model_version=body["model_version"], id=body["id"]
    )
    for output in body["outputs"]:
        tensor = response.outputs.add(name=output["name"], datatype=output["datatype"], shape=output["shape"])
        for key, value in (output.get("parameters") or {}).items():
            tensor.parameters[key].string_param = json.dumps(value)
        response.raw_output_contents.append(binary.encode(output["datatype"], output["data"]))
    return response


def tensor_metadata(tensors: list[TensorMetadata]) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    message = pb.ModelMetadataResponse.TensorMetadata
    return [message(name=item.name, datatype=item.datatype, shape=item.shape) for item in tensors]


def model_version(requested: str) -> str | None:
    return requested or None  # the protocol's empty version: whichever is loaded
