"""The Open Inference Protocol's binary tensor data extension over REST, as Triton and KServe
define it and `tritonclient.http` speaks it by default.

A request with an `Inference-Header-Content-Length: N` header carries its JSON in the body's
first N bytes; each input whose parameters give `binary_data_size` has no `data`, and its
elements are the next that many bytes after the JSON, in the order of the inputs. Elements are
little-endian and row-major, without padding: BOOL one byte (0 or 1), BYTES a 4-byte length
then that many bytes (UTF-8 text here, as the services' BYTES fields are strings).

Outputs go back the same way when the request asks: `binary_data: true` in a requested
output's parameters, or `binary_data_output: true` in the request's. Such an output's `data`
becomes `binary_data_size`, its bytes follow the JSON, and the response gives the JSON's length
in the same header.

This module only converts; `modelserving.rest.v2` decides when, and turns `BinaryDataError` into
the protocol's 400.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

HEADER = "inference-header-content-length"
SIZE_PARAMETER = "binary_data_size"
# Fixed-size datatypes: their little-endian NumPy types.
FIXED: dict[str, np.dtype] = {
    datatype: np.dtype(code)
    for datatype, code in {
        "BOOL": "u1",
        "UINT8": "u1",
        "UINT16": "<u2",
        "UINT32": "<u4",
        "UINT64": "<u8",
        "INT8": "i1",
        "INT16": "<i2",
        "INT32": "<i4",
        "INT64": "<i8",
        "FP16": "<f2",
        "FP32": "<f4",
        "FP64": "<f8",
    }.items()
}
_LENGTH = struct.Struct("<I")


class BinaryDataError(ValueError):
    """A binary request the extension cannot read; the message names the input at fault."""


def split(body: bytes, header_length: str) -> tuple[bytes, bytes]:
    """(the JSON, the binary data after it) of a body whose JSON is `header_length` bytes."""
    if not (header_length.isascii() and header_length.isdigit() and len(header_length) < 19) or int(
        header_length
    ) > len(body):
        raise BinaryDataError(
            f"the Inference-Header-Content-Length header must be a byte count within the body's "
            f"{len(body)} bytes, got {header_length!r}"
        )
    length = int(header_length)
    return body[:length], body[length:]


def attach_inputs(inputs: Sequence[dict[str, Any]], binary: bytes) -> None:
    """Give each input its `data`: decoded from `binary` for those with a `binary_data_size`."""
    offset = 0
    for item in inputs:
        size = (item.get("parameters") or {}).get(SIZE_PARAMETER)
        if size is None:
            if "data" not in item:
                raise BinaryDataError(f"input '{item['name']}' has neither data nor a {SIZE_PARAMETER}")
            continue
        name = item["name"]
        if "data" in item:
            raise BinaryDataError(f"input '{name}' has both data and a {SIZE_PARAMETER}")
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise BinaryDataError(
                f"input '{name}': {SIZE_PARAMETER} {size!r} is not a byte count within the "
                f"{len(binary) - offset} bytes left after the JSON"
            )
        item["data"] = decode(
            name, item["datatype"], math.prod(item["shape"]), binary[offset : offset + size]
        )
        offset += size
    if offset != len(binary):
        raise BinaryDataError(
            f"{len(binary) - offset} bytes after the inputs' binary data belong to no input"
        )


def decode(name: str, datatype: str, count: int, data: bytes) -> list[Any]:
    """The `count` elements of input `name` that `data` holds; BinaryDataError if it cannot."""
    if datatype == "BYTES":
        return _decode_strings(name, count, data)
    dtype = FIXED[datatype]
    if len(data) != count * dtype.itemsize:
        raise BinaryDataError(
            f"input '{name}': {count} {datatype} elements take {count * dtype.itemsize} bytes, "
            f"{SIZE_PARAMETER} is {len(data)}"
        )
    values = np.frombuffer(data, dtype=dtype)
    if datatype != "BOOL":
        return values.tolist()  # type: ignore[no-any-return]
    if values.size and values.max() > 1:
        raise BinaryDataError(f"input '{name}': a BOOL element is the byte 0 or 1")
    return values.astype(bool).tolist()  # type: ignore[no-any-return]


def _decode_strings(name: str, count: int, data: bytes) -> list[str]:
    strings: list[str] = []
    offset = 0
    while offset < len(data):
        if len(strings) == count:  # stop at the declared count, not at the end of the data
            raise BinaryDataError(
                f"input '{name}': its shape needs {count} BYTES elements, the data has more"
            )
        if offset + _LENGTH.size > len(data):
            raise BinaryDataError(f"input '{name}': BYTES element {len(strings)} is cut short")
        (length,) = _LENGTH.unpack_from(data, offset)
        start = offset + _LENGTH.size
        if start + length > len(data):
            raise BinaryDataError(f"input '{name}': BYTES element {len(strings)} is cut short")
        try:
            strings.append(data[start : start + length].decode())
        except UnicodeDecodeError:
            raise BinaryDataError(f"input '{name}': BYTES element {len(strings)} is not UTF-8 text") from None
        offset = start + length
    if len(strings) != count:
        raise BinaryDataError(
            f"input '{name}': its shape needs {count} BYTES elements, the data has {len(strings)}"
        )
    return strings


def binary_outputs(
    parameters: Mapping[str, Any] | None, requested: Iterable[Mapping[str, Any]] | None, names: Iterable[str]
) -> set[str]:
    """The outputs, of `names` (the ones the response holds), the request wants as binary."""
    everything = bool((parameters or {}).get("binary_data_output", False))
    choices = {
        output["name"]: (output.get("parameters") or {}).get("binary_data") for output in requested or ()
    }
    return {
        name for name in names if choices.get(name) is True or (everything and choices.get(name) is not False)
    }


def encode_outputs(outputs: Sequence[dict[str, Any]], binary: set[str]) -> bytes:
    """Move the `data` of the outputs named in `binary` into the returned bytes, in order, each
    output given its `binary_data_size` instead."""
    chunks = []
    for output in outputs:
        if output["name"] not in binary:
            continue
        chunk = encode(output["datatype"], output.pop("data"))
        output["parameters"] = {**(output.get("parameters") or {}), SIZE_PARAMETER: len(chunk)}
        chunks.append(chunk)
    return b"".join(chunks)


def encode(datatype: str, data: Sequence[Any]) -> bytes:
    """The elements `data` as the extension lays them out."""
    if datatype == "BYTES":
        encoded = [str(value).encode() for value in data]
        return b"".join(_LENGTH.pack(len(value)) + value for value in encoded)
    return np.asarray(data, dtype=FIXED[datatype]).tobytes()
