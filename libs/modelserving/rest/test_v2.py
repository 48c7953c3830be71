"""The Open Inference Protocol routes, on the toy service (one float field `x`, output `value`)."""

import dataclasses
import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelserving import ModelService, Settings
from modelserving.protocol.types import InferenceRequest, InferenceResponse
from modelserving.server.app import create_app

LIMITS = Settings(max_batch_size=3, app_revision="rev-9")
INFER = "/v2/models/toy/infer"


@pytest.fixture
def client(toy_service: ModelService[Any, Any]) -> Iterator[TestClient]:
    with TestClient(create_app(toy_service, LIMITS)) as started:
        yield started


@pytest.fixture
def tensor_client(toy_service: ModelService[Any, Any]) -> Iterator[TestClient]:
    service = dataclasses.replace(toy_service, v2_tensor_input="features")
    with TestClient(create_app(service, LIMITS)) as started:
        yield started


def x_input(data: list[Any], shape: list[int] | None = None, datatype: str = "FP64") -> dict[str, Any]:
    return {"name": "x", "shape": shape or [len(data)], "datatype": datatype, "data": data}


def assert_protocol_error(response: Any, status: int, *mentions: str) -> None:
    assert response.status_code == status
    body = response.json()
    assert list(body) == ["error"]
    for mention in mentions:
        assert mention in body["error"]


def test_server_metadata_and_health(client: TestClient) -> None:
    assert client.get("/v2").json() == {
        "name": "toy",
        "version": "rev-9",
        "extensions": ["binary_tensor_data"],
    }
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/toy/ready").json() == {"ready": True}
    assert client.get("/v2/models/toy/versions/7.1/ready").json() == {"ready": True}


def test_model_metadata_declares_inputs_and_outputs(client: TestClient) -> None:
    metadata = client.get("/v2/models/toy").json()
    assert metadata["name"] == "toy"
    assert metadata["versions"] == ["7.1"]
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP64", "shape": [-1]}]
    assert metadata["outputs"] == [{"name": "value", "datatype": "FP64", "shape": [-1]}]


def test_infer_matches_the_typed_route(client: TestClient) -> None:
    typed = client.post("/scale", json=[{"x": 1.5}, {"x": -2}]).json()
    response = client.post(INFER, json={"id": "req-1", "inputs": [x_input([1.5, -2])]})
    assert response.status_code == 200
    InferenceResponse.model_validate_json(response.content, strict=True)  # the declared response type
    assert response.json() == {
        "model_name": "toy",
        "model_version": "7.1",
        "id": "req-1",
        "outputs": [
            {
                "name": "value",
                "shape": [2],
                "datatype": "FP64",
                "data": [p["value"] for p in typed["predictions"]],
            }
        ],
    }


@pytest.mark.parametrize(("data", "shape"), [([[1.0], [2.0]], [2, 1]), ([1, 2], [2])])
def test_nested_data_and_integer_values(client: TestClient, data: list[Any], shape: list[int]) -> None:
    response = client.post("/v2/models/toy/versions/7.1/infer", json={"inputs": [x_input(data, shape)]})
    assert response.status_code == 200
    assert response.json()["outputs"][0]["data"] == [3.0, 6.0]


def test_id_defaults_to_the_request_id(client: TestClient) -> None:
    response = client.post(INFER, json={"inputs": [x_input([1.0])]}, headers={"X-Request-ID": "from-header"})
    assert response.json()["id"] == "from-header"


def test_unknown_model_or_version_is_404(client: TestClient) -> None:
    assert_protocol_error(client.get("/v2/models/iris"), 404, "model 'iris' not found")
    assert_protocol_error(client.post("/v2/models/iris/infer", json={"inputs": [x_input([1])]}), 404, "iris")
    assert_protocol_error(client.get("/v2/models/toy/versions/9/ready"), 404, "version '9'")


@pytest.mark.parametrize(
    ("inputs", "mentions"),
    [
        ([x_input(["a"], datatype="BYTES")], ["input 'x'", "datatype must be FP64, got BYTES"]),
        ([x_input([1.0, 2.0], shape=[3])], ["input 'x'", "needs 3 elements, data has 2"]),
        ([x_input([1.0], shape=[1, 2])], ["input 'x'", "shape must be [N] or [N, 1]"]),
        ([{"name": "y", "shape": [1], "datatype": "FP64", "data": [1]}], ["input 'y' is not an input"]),
        ([x_input([5000.0])], ["input 'x', row 0", "less than or equal to 1000"]),
        ([x_input([1.0, 2.0, 3.0, 4.0])], ["4 rows exceed the limit of 3"]),
        ([x_input([1.0]), x_input([2.0])], ["only once"]),
    ],
)
def test_bad_inputs_are_400_naming_the_input(
    client: TestClient, inputs: list[Any], mentions: list[str]
) -> None:
    assert_protocol_error(client.post(INFER, json={"inputs": inputs}), 400, *mentions)


def test_non_finite_values_are_400(client: TestClient) -> None:
    body = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [NaN]}]}'
    response = client.post(INFER, content=body, headers={"content-type": "application/json"})
    assert_protocol_error(response, 400, "input 'x', row 0")


@pytest.mark.parametrize(
    "body",
    [{}, {"inputs": []}, {"inputs": [{"name": "x", "shape": [1], "datatype": "FP99", "data": [1]}]}, [1, 2]],
)
def test_malformed_requests_are_400_with_the_protocol_body(client: TestClient, body: Any) -> None:
    assert_protocol_error(client.post(INFER, json=body), 400)


def test_requested_outputs(client: TestClient) -> None:
    wanted = client.post(INFER, json={"inputs": [x_input([1.0])], "outputs": [{"name": "value"}]})
    assert [output["name"] for output in wanted.json()["outputs"]] == ["value"]
    unknown = client.post(INFER, json={"inputs": [x_input([1.0])], "outputs": [{"name": "nope"}]})
    assert_protocol_error(unknown, 400, "output 'nope'")


def test_unknown_v2_route_is_a_protocol_404(client: TestClient) -> None:
    assert_protocol_error(client.get("/v2/nope"), 404)


def test_not_ready_before_the_model_is_loaded(toy_service: ModelService[Any, Any]) -> None:
    client = TestClient(create_app(toy_service, LIMITS))  # lifespan not run
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/v2/models/toy/ready").json() == {"ready": False}
    assert_protocol_error(client.post(INFER, json={"inputs": [x_input([1.0])]}), 503, "not ready")


@pytest.mark.parametrize("name", ["features", "anything"])
def test_tensor_input_under_its_name_or_as_the_only_input(tensor_client: TestClient, name: str) -> None:
    tensor = {"name": name, "shape": [2, 1], "datatype": "FP32", "data": [[1.0], [2.0]]}
    response = tensor_client.post(INFER, json={"inputs": [tensor]})
    assert response.status_code == 200
    assert response.json()["outputs"][0]["data"] == [3.0, 6.0]


def test_tensor_input_metadata_and_errors(tensor_client: TestClient) -> None:
    (declared,) = tensor_client.get("/v2/models/toy").json()["inputs"]
    assert (declared["name"], declared["datatype"], declared["shape"]) == ("features", "FP32", [-1, 1])
    wide = {"name": "features", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}
    assert_protocol_error(tensor_client.post(INFER, json={"inputs": [wide]}), 400, "'features'", "[N, 1]")
    text = {"name": "features", "shape": [1, 1], "datatype": "BYTES", "data": ["a"]}
    assert_protocol_error(
        tensor_client.post(INFER, json={"inputs": [text]}), 400, "'features'", "FP32 or FP64"
    )
    big = {"name": "features", "shape": [1, 1], "datatype": "FP64", "data": [1e6]}
    assert_protocol_error(
        tensor_client.post(INFER, json={"inputs": [big]}), 400, "'features' column 'x', row 0"
    )


def test_each_route_shape_takes_only_its_own_parameters(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for suffix, method in (("", "get"), ("/ready", "get"), ("/infer", "post")):
        latest = paths[f"/v2/models/{{model_name}}{suffix}"][method]
        versioned = paths[f"/v2/models/{{model_name}}/versions/{{model_version}}{suffix}"][method]
        assert [p["name"] for p in latest["parameters"]] == ["model_name"]
        assert [(p["name"], p["in"]) for p in versioned["parameters"]] == [
            ("model_name", "path"),
            ("model_version", "path"),
        ]


def test_infer_documents_the_request_body_it_parses(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    for path in ("/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{model_version}/infer"):
        body = document["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        assert body["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/InferenceRequest"
        }
    schemas = document["components"]["schemas"]
    assert schemas["InferenceRequest"]["properties"].keys() == InferenceRequest.__annotations__.keys()
    assert schemas["InferenceRequest"]["properties"]["inputs"]["items"] == {
        "$ref": "#/components/schemas/RequestInput"
    }
    assert "RequestInput" in schemas


def test_a_body_that_is_not_json_is_refused(client: TestClient) -> None:
    text = client.post(INFER, content=b'{"inputs": []}', headers={"content-type": "text/plain"})
    assert_protocol_error(text, 415, "content-type must be application/json")
    assert_protocol_error(
        client.post(INFER, content=b"{", headers={"content-type": "application/json"}), 400, "Invalid JSON"
    )
    assert_protocol_error(client.post(INFER, content=b""), 400)


def test_wrong_method_on_a_v2_route_is_a_protocol_405(client: TestClient) -> None:
    response = client.get(INFER)
    assert_protocol_error(response, 405)
    assert response.headers["allow"] == "POST"


def binary_request(header: dict[str, Any], data: bytes) -> dict[str, Any]:
    """Keyword arguments of a POST in the binary tensor data extension (as tritonclient sends it)."""
    encoded = json.dumps(header).encode()
    return {"content": encoded + data, "headers": {"Inference-Header-Content-Length": str(len(encoded))}}


def binary_x(values: list[float]) -> tuple[dict[str, Any], bytes]:
    data = struct.pack(f"<{len(values)}d", *values)
    return {
        "name": "x",
        "shape": [len(values)],
        "datatype": "FP64",
        "parameters": {"binary_data_size": len(data)},
    }, data


def test_binary_inputs_give_what_json_inputs_give(client: TestClient) -> None:
    item, data = binary_x([1.5, -2.0])
    response = client.post(INFER, **binary_request({"id": "b", "inputs": [item]}, data))
    assert response.status_code == 200, response.text
    as_json = client.post(INFER, json={"id": "b", "inputs": [x_input([1.5, -2.0])]})
    assert response.json() == as_json.json()


@pytest.mark.parametrize(
    "ask",
    [
        {"parameters": {"binary_data_output": True}},
        {"outputs": [{"name": "value", "parameters": {"binary_data": True}}]},
    ],
)
def test_binary_outputs_follow_the_json(client: TestClient, ask: dict[str, Any]) -> None:
    response = client.post(INFER, json={"inputs": [x_input([1.5, -2.0])], **ask})
    assert response.status_code == 200
    length = int(response.headers["inference-header-content-length"])
    header, data = json.loads(response.content[:length]), response.content[length:]
    (output,) = header["outputs"]
    assert "data" not in output and output["parameters"] == {"binary_data_size": 16}
    assert struct.unpack("<2d", data) == (4.5, -6.0)


def test_outputs_stay_json_unless_asked(client: TestClient) -> None:
    item, data = binary_x([1.0])
    response = client.post(INFER, **binary_request({"inputs": [item]}, data))
    assert "inference-header-content-length" not in response.headers
    assert response.json()["outputs"][0]["data"] == [3.0]


@pytest.mark.parametrize(
    ("header", "data", "length", "mentions"),
    [
        ({"inputs": [binary_x([1.0])[0]]}, b"", None, ["input 'x'", "binary_data_size 8"]),
        (
            {"inputs": [binary_x([1.0])[0]]},
            binary_x([1.0])[1] + b"!",
            None,
            ["1 bytes", "belong to no input"],
        ),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64"}]},
            b"",
            None,
            ["input 'x'", "neither data"],
        ),
        ({"inputs": [binary_x([1.0])[0]]}, binary_x([1.0])[1], "9999", ["Inference-Header-Content-Length"]),
        ({"inputs": [binary_x([5000.0])[0]]}, binary_x([5000.0])[1], None, ["input 'x', row 0"]),
        ({"inputs": [binary_x([float("nan")])[0]]}, binary_x([float("nan")])[1], None, ["input 'x', row 0"]),
        ({"inputs": "x"}, b"", None, ["inputs"]),
    ],
)
def test_bad_binary_requests_are_400_naming_the_fault(
    client: TestClient, header: dict[str, Any], data: bytes, length: str | None, mentions: list[str]
) -> None:
    request = binary_request(header, data)
    if length is not None:
        request["headers"]["Inference-Header-Content-Length"] = length
    assert_protocol_error(client.post(INFER, **request), 400, *mentions)


def test_a_binary_request_of_another_content_type_is_refused(client: TestClient) -> None:
    item, data = binary_x([1.0])
    request = binary_request({"inputs": [item]}, data)
    request["headers"]["content-type"] = "text/plain"
    assert_protocol_error(client.post(INFER, **request), 415, "application/octet-stream")
    request["headers"]["content-type"] = "application/octet-stream"
    assert client.post(INFER, **request).status_code == 200
