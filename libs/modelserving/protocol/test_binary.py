"""The binary tensor data extension's codec, against bytes laid out by hand with `struct`
as the extension's text describes them (little-endian, row-major, BYTES length-prefixed)."""

import struct
from typing import Any

import pytest

from modelserving.protocol.binary import BinaryDataError, attach_inputs, binary_outputs, encode_outputs, split

# (datatype, struct code, values)
FIXED = [
    ("BOOL", "?", [True, False, True]),
    ("UINT8", "B", [0, 255]),
    ("UINT16", "H", [1, 65535]),
    ("UINT32", "I", [7, 2**32 - 1]),
    ("UINT64", "Q", [9, 2**64 - 1]),
    ("INT8", "b", [-128, 127]),
    ("INT16", "h", [-2, 300]),
    ("INT32", "i", [-(2**31), 5]),
    ("INT64", "q", [-(2**63), 892]),
    ("FP16", "e", [0.5, -2.0]),
    ("FP32", "f", [1.5, -0.25]),
    ("FP64", "d", [34.5, 7.8292]),
]


def laid_out(code: str, values: list[Any]) -> bytes:
    return struct.pack(f"<{len(values)}{code}", *values)


def strings(*values: str) -> bytes:
    return b"".join(struct.pack("<I", len(value.encode())) + value.encode() for value in values)


def binary_input(name: str, datatype: str, shape: list[int], size: int) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": size}}


@pytest.mark.parametrize(("datatype", "code", "values"), FIXED, ids=[row[0] for row in FIXED])
def test_each_fixed_size_datatype_decodes_and_encodes(datatype: str, code: str, values: list[Any]) -> None:
    data = laid_out(code, values)
    inputs = [binary_input("t", datatype, [len(values)], len(data))]
    attach_inputs(inputs, data)
    assert inputs[0]["data"] == values
    outputs: list[dict[str, Any]] = [
        {"name": "t", "datatype": datatype, "shape": [len(values)], "data": values}
    ]
    assert encode_outputs(outputs, {"t"}) == data
    assert outputs[0]["parameters"] == {"binary_data_size": len(data)} and "data" not in outputs[0]


def test_bytes_elements_are_length_prefixed_text() -> None:
    data = strings("Kelly, Mr. James", "", "Müller")
    inputs = [binary_input("Name", "BYTES", [3], len(data))]
    attach_inputs(inputs, data)
    assert inputs[0]["data"] == ["Kelly, Mr. James", "", "Müller"]
    outputs = [
        {"name": "Name", "datatype": "BYTES", "shape": [3], "data": ["Kelly, Mr. James", "", "Müller"]}
    ]
    assert encode_outputs(outputs, {"Name"}) == data


def test_binary_and_json_inputs_mix_in_order() -> None:
    ages, fares = laid_out("d", [34.5, 47.0]), laid_out("d", [7.8292, 7.0])
    inputs = [
        binary_input("Age", "FP64", [2], len(ages)),
        {"name": "Sex", "datatype": "BYTES", "shape": [2], "data": ["male", "female"]},
        binary_input("Fare", "FP64", [2, 1], len(fares)),
    ]
    attach_inputs(inputs, ages + fares)
    assert [item["data"] for item in inputs] == [[34.5, 47.0], ["male", "female"], [7.8292, 7.0]]


def test_only_the_outputs_asked_for_are_binary() -> None:
    names = ["survived", "score"]
    assert binary_outputs({"binary_data_output": True}, None, names) == {"survived", "score"}
    wanted: list[dict[str, Any]] = [
        {"name": "score", "parameters": {"binary_data": True}},
        {"name": "survived"},
    ]
    assert binary_outputs(None, wanted, names) == {"score"}
    everything_but = [{"name": "score", "parameters": {"binary_data": False}}]
    assert binary_outputs({"binary_data_output": True}, everything_but, names) == {"survived"}
    assert binary_outputs(None, None, names) == set()
    outputs: list[dict[str, Any]] = [
        {"name": "survived", "datatype": "BOOL", "shape": [1], "data": [True]},
        {
            "name": "p",
            "datatype": "FP64",
            "shape": [1, 2],
            "parameters": {"labels": ["a", "b"]},
            "data": [0.25, 0.75],
        },
    ]
    assert encode_outputs(outputs, {"p"}) == laid_out("d", [0.25, 0.75])
    assert outputs[0]["data"] == [True]
    assert outputs[1]["parameters"] == {"labels": ["a", "b"], "binary_data_size": 16}


@pytest.mark.parametrize(
    ("inputs", "data", "mention"),
    [
        ([binary_input("x", "FP64", [2], 8)], laid_out("d", [1.0]), "x"),  # size: 1 element of 2
        ([binary_input("x", "FP64", [1], 16)], laid_out("d", [1.0, 2.0]), "take 8 bytes"),
        ([binary_input("x", "FP64", [1], 8)], laid_out("d", [1.0, 2.0]), "belong to no input"),
        ([binary_input("x", "FP64", [1], 9)], laid_out("d", [1.0]), "within the 8 bytes"),
        ([binary_input("x", "FP64", [1], -1)], b"", "binary_data_size -1"),
        ([{**binary_input("x", "FP64", [1], 8), "data": [1.0]}], laid_out("d", [1.0]), "both data and"),
        ([{"name": "x", "datatype": "FP64", "shape": [1]}], b"", "neither data nor"),
        ([binary_input("b", "BOOL", [1], 1)], b"\x02", "0 or 1"),
        ([binary_input("s", "BYTES", [1], 6)], struct.pack("<I", 5) + b"ab", "cut short"),
        ([binary_input("s", "BYTES", [1], 3)], b"\x01\x00\x00", "cut short"),
        ([binary_input("s", "BYTES", [2], 5)], strings("a"), "needs 2 BYTES elements"),
        ([binary_input("s", "BYTES", [1], 5)], struct.pack("<I", 1) + b"\xff", "not UTF-8"),
    ],
)
def test_bad_binary_inputs_name_the_input(inputs: list[dict[str, Any]], data: bytes, mention: str) -> None:
    with pytest.raises(BinaryDataError) as refused:
        attach_inputs(inputs, data)
    assert mention in str(refused.value)


@pytest.mark.parametrize("header_length", ["-1", "abc", "", "11"])
def test_the_header_length_must_lie_within_the_body(header_length: str) -> None:
    with pytest.raises(BinaryDataError, match="Inference-Header-Content-Length"):
        split(b"0123456789", header_length)
    assert split(b'{"a": 1}xyz', "8") == (b'{"a": 1}', b"xyz")
