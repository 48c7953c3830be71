"""The gRPC API (modelserving.grpc.server) of the toy service, called over a real channel: the
same answers, refusals and batches as the REST API, with gRPC's status codes."""

import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import grpc  # type: ignore[import]
import pytest
from fastapi.testclient import TestClient
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import]
from inference_grpc import grpc_predict_v2_pb2 as pb  # pants: no-infer-dep (compiled in the build)

from modelserving import ModelService, Settings
from modelserving.dev.testing import free_port, metric_value, raised
from modelserving.grpc import server as grpc_api
from modelserving.grpc.server import MAX_CONCURRENT_STREAMS
from modelserving.server.app import create_app

SERVICE = "/inference.GRPCInferenceService/"
TOKEN = "toy-grpc-token-0123456789"


class Api:
    """The REST client and a gRPC channel of one running toy service."""

    def __init__(self, rest: TestClient, channel: Any, port: int) -> None:
        self.rest = rest
        self.channel = channel
        self.port = port

    def call(self, method: str, request: Any, response_type: Any, **options: Any) -> Any:
        rpc = self.channel.unary_unary(
            SERVICE + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        return rpc(request, timeout=10, **options)

    def infer(self, request: pb.ModelInferRequest, **options: Any) -> Any:
        return self.call("ModelInfer", request, pb.ModelInferResponse, **options)

    def refusal(self, method: str, request: Any, response_type: Any, **options: Any) -> tuple[Any, str]:
        with pytest.raises(grpc.RpcError) as refused:
            self.call(method, request, response_type, **options)
        return raised(refused).code(), raised(refused).details()


@contextmanager
def serving(service: ModelService[Any, Any], **settings: Any) -> Iterator[Api]:
    port = free_port()
    config = Settings(grpc_port=port, max_batch_size=3, app_revision="rev-g", **settings)
    with TestClient(create_app(service, config)) as rest, grpc.insecure_channel(
        f"127.0.0.1:{port}"
    ) as channel:
        yield Api(rest, channel, port)


@pytest.fixture
def api(toy_service: ModelService[Any, Any]) -> Iterator[Api]:
    with serving(toy_service) as started:
        yield started


def tensor(
    name: str, datatype: str, shape: list[int], **contents: Any
) -> pb.ModelInferRequest.InferInputTensor:
    """An input tensor; `contents`: its typed elements, e.g. fp64_contents=[1.0]."""
    return pb.ModelInferRequest.InferInputTensor(
        name=name, datatype=datatype, shape=shape, contents=pb.InferTensorContents(**contents)
    )


def x_input(*values: float) -> pb.ModelInferRequest.InferInputTensor:
    return tensor("x", "FP64", [len(values)], fp64_contents=values)


def fp64s(raw: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(raw) // 8}d", raw))


def test_infer_gives_the_typed_routes_predictions(api: Api) -> None:
    response = api.infer(pb.ModelInferRequest(model_name="toy", id="r-1", inputs=[x_input(1.5, -2.0)]))
    assert (response.model_name, response.model_version, response.id) == ("toy", "7.1", "r-1")
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("value", "FP64", [2])
    assert fp64s(response.raw_output_contents[0]) == [4.5, -6.0]  # the toy model triples
    typed = api.rest.post("/scale", json=[{"x": 1.5}, {"x": -2.0}]).json()["predictions"]
    assert [row["value"] for row in typed] == [4.5, -6.0]


def test_raw_input_contents_are_read_as_tritonclient_sends_them(api: Api) -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[2, 1])
    request = pb.ModelInferRequest(
        model_name="toy", inputs=[tensor], raw_input_contents=[struct.pack("<2f", 0.5, 4.0)]
    )
    assert fp64s(api.infer(request).raw_output_contents[0]) == [1.5, 12.0]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.ModelInferRequest(model_name="toy"), "inputs: a request has 1 to 1024 inputs, got 0"),
        (
            pb.ModelInferRequest(model_name="toy", inputs=[tensor("", "FP64", [1])]),
            "inputs[0].name: 1 to 256 characters, got 0",
        ),
        (
            pb.ModelInferRequest(model_name="toy", inputs=[tensor("x", "FP64", [1] * 9)]),
            "input 'x': shape [1, 1, 1, 1, 1, 1, 1, 1, 1] must have 1 to 8 dimensions",
        ),
        (
            pb.ModelInferRequest(model_name="toy", inputs=[tensor("x", "FP64", [])]),
            "input 'x': shape [] must have 1 to 8 dimensions",
        ),
        (
            pb.ModelInferRequest(model_name="toy", id="i" * 257, inputs=[x_input(1.0)]),
            "id: at most 256 characters, got 257",
        ),
        (pb.ModelInferRequest(model_name="toy", inputs=[x_input(1, 2, 3, 4)]), "exceed the limit of 3 rows"),
        (
            pb.ModelInferRequest(model_name="toy", inputs=[x_input(5000.0)]),
            "input 'x', row 0: Input should be less than or equal to 1000",
        ),
        (
            pb.ModelInferRequest(
                model_name="toy",
                inputs=[tensor("x", "INT64", [1], fp64_contents=[1.0])],
            ),
            "input 'x': shape [1] needs 1 elements, data has 0",
        ),
        (
            pb.ModelInferRequest(
                model_name="toy",
                inputs=[tensor("x", "FLOAT", [1])],
            ),
            "input 'x': unknown datatype 'FLOAT'",
        ),
        (
            pb.ModelInferRequest(
                model_name="toy",
                inputs=[tensor("x", "FP16", [1])],
            ),
            "input 'x': FP16 elements travel in raw_input_contents",
        ),
        (
            pb.ModelInferRequest(model_name="toy", inputs=[x_input(1.0)], raw_input_contents=[b"", b""]),
            "raw_input_contents has 2 entries for 1 inputs",
        ),
        (
            pb.ModelInferRequest(
                model_name="toy",
                inputs=[tensor("x", "FP64", [2])],
                raw_input_contents=[struct.pack("<d", 1.0)],
            ),
            "input 'x': 2 FP64 elements take 16 bytes, binary_data_size is 8",
        ),
        (
            pb.ModelInferRequest(
                model_name="toy",
                inputs=[tensor("x", "BYTES", [1], bytes_contents=[b"\xff"])],
            ),
            "input 'x': a BYTES element is not UTF-8 text",
        ),
        (
            pb.ModelInferRequest(
                model_name="toy",
                inputs=[tensor("y", "FP64", [1], fp64_contents=[1.0])],
            ),
            "input 'y' is not an input of this model",
        ),
        (
            pb.ModelInferRequest(
                model_name="toy",
                inputs=[x_input(1.0)],
                outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="nope")],
            ),
            "output 'nope' is not an output of this model",
        ),
    ],
    ids=[
        "no-inputs",
        "empty-name",
        "nine-dimensions",
        "no-dimensions",
        "long-id",
        "too-many-rows",
        "out-of-range",
        "wrong-contents",
        "unknown-datatype",
        "fp16-contents",
        "raw-count",
        "raw-size",
        "not-utf8",
        "unknown-input",
        "unknown-output",
    ],
)
def test_an_invalid_request_is_invalid_argument_naming_the_input(
    api: Api, request_: Any, message: str
) -> None:
    code, details = api.refusal("ModelInfer", request_, pb.ModelInferResponse)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in details


def test_a_message_over_max_body_bytes_is_resource_exhausted(toy_service: ModelService[Any, Any]) -> None:
    with serving(toy_service, max_body_bytes=4096) as api:
        padded = pb.ModelInferRequest(model_name="toy", id="x", inputs=[x_input(1.0)])
        padded.parameters["padding"].string_param = "p" * 5000
        code, _ = api.refusal("ModelInfer", padded, pb.ModelInferResponse)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert api.infer(
            pb.ModelInferRequest(model_name="toy", inputs=[x_input(1.0)])
        ).outputs  # still serving


def test_bytes_that_are_not_the_rpcs_message_are_invalid_argument(api: Api) -> None:
    rpc = api.channel.unary_unary(SERVICE + "ModelInfer", request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as refused:
        rpc(b"\xff\xff\xff", timeout=10)
    assert raised(refused).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a inference.ModelInferRequest message" in raised(refused).details()
    assert api.rest.get("/livez").status_code == 200  # the worker carries on


def test_unknown_model_and_version_are_not_found(api: Api) -> None:
    for request, message in [
        (pb.ModelInferRequest(model_name="other", inputs=[x_input(1.0)]), "model 'other' not found"),
        (
            pb.ModelInferRequest(model_name="toy", model_version="9", inputs=[x_input(1.0)]),
            "model 'toy' version '9' not found",
        ),
    ]:
        assert api.refusal("ModelInfer", request, pb.ModelInferResponse) == (
            grpc.StatusCode.NOT_FOUND,
            message,
        )
    code, _ = api.refusal("ModelMetadata", pb.ModelMetadataRequest(name="other"), pb.ModelMetadataResponse)
    assert code == grpc.StatusCode.NOT_FOUND


def test_health_and_metadata_match_the_rest_api(api: Api) -> None:
    assert api.call("ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse).live
    assert api.call("ServerReady", pb.ServerReadyRequest(), pb.ServerReadyResponse).ready
    assert api.call("ModelReady", pb.ModelReadyRequest(name="toy"), pb.ModelReadyResponse).ready
    assert api.call(
        "ModelReady", pb.ModelReadyRequest(name="toy", version="7.1"), pb.ModelReadyResponse
    ).ready
    server = api.call("ServerMetadata", pb.ServerMetadataRequest(), pb.ServerMetadataResponse)
    assert {
        "name": server.name,
        "version": server.version,
        "extensions": list(server.extensions),
    } == api.rest.get("/v2").json()
    model = api.call("ModelMetadata", pb.ModelMetadataRequest(name="toy"), pb.ModelMetadataResponse)
    rest = api.rest.get("/v2/models/toy").json()
    assert (model.name, list(model.versions), model.platform) == (
        rest["name"],
        rest["versions"],
        rest["platform"],
    )
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [
        (t["name"], t["datatype"], t["shape"]) for t in rest["inputs"]
    ]
    health = health_pb2_grpc.HealthStub(api.channel)
    for service in ("", "inference.GRPCInferenceService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING


def test_the_request_id_is_taken_and_sent_back(api: Api) -> None:
    rpc = api.channel.unary_unary(
        SERVICE + "ModelInfer",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    response, call = rpc.with_call(
        pb.ModelInferRequest(model_name="toy", inputs=[x_input(1.0)]),
        metadata=[("x-request-id", "abc-123")],
        timeout=10,
    )
    assert response.id == "abc-123"  # no id in the request: the request id, as on REST
    assert ("x-request-id", "abc-123") in call.trailing_metadata()


def test_rpcs_are_counted_by_method_and_code(api: Api) -> None:
    api.infer(pb.ModelInferRequest(model_name="toy", inputs=[x_input(1.0)]))
    api.refusal(
        "ModelInfer", pb.ModelInferRequest(model_name="other", inputs=[x_input(1.0)]), pb.ModelInferResponse
    )
    text = api.rest.get("/metrics").text
    for code in ("OK", "NOT_FOUND"):
        handled = metric_value(
            text,
            "grpc_server_handled_total",
            grpc_code=code,
            grpc_method="ModelInfer",
            grpc_service="inference.GRPCInferenceService",
        )
        assert handled >= 1, code
    assert 'grpc_server_handling_seconds_count{grpc_method="ModelInfer"' in text


def test_grpc_and_rest_predictions_share_one_batch(toy_service: ModelService[Any, Any]) -> None:
    """Both APIs feed the same inference queue: calls that arrive together are one model call."""
    with serving(toy_service, batch_wait_microseconds=100_000) as api:
        before = batch_count(api.rest)
        request = pb.ModelInferRequest(model_name="toy", inputs=[x_input(2.0)])
        with ThreadPoolExecutor(2) as pool:
            over_grpc = pool.submit(api.infer, request)
            over_rest = pool.submit(api.rest.post, "/scale", json=[{"x": 3.0}])
            assert fp64s(over_grpc.result().raw_output_contents[0]) == [6.0]
            assert over_rest.result().json()["predictions"] == [{"value": 9.0}]
        assert batch_count(api.rest) == before + 1


def batch_count(rest: TestClient) -> float:
    return metric_value(rest.get("/metrics").text, "model_batch_size_count", model="toy")


def test_with_auth_the_model_rpcs_need_the_token(toy_service: ModelService[Any, Any]) -> None:
    from pydantic import SecretStr

    with serving(toy_service, auth_token=SecretStr(TOKEN)) as api:
        request = pb.ModelInferRequest(model_name="toy", inputs=[x_input(1.0)])
        assert api.refusal("ModelInfer", request, pb.ModelInferResponse) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "missing bearer token",
        )
        wrong = [("authorization", "Bearer not-the-token-at-all")]
        assert (
            api.refusal("ModelInfer", request, pb.ModelInferResponse, metadata=wrong)[0]
            == grpc.StatusCode.UNAUTHENTICATED
        )
        assert api.call("ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse).live  # open, as on REST
        response = api.infer(request, metadata=[("authorization", f"Bearer {TOKEN}")])
        assert fp64s(response.raw_output_contents[0]) == [3.0]


def test_a_connection_carries_at_most_max_concurrent_streams(api: Api) -> None:
    """The server's HTTP/2 SETTINGS, as nghttp (nghttp2-client, which ./pants test installs) reads them."""
    nghttp = shutil.which("nghttp") or "/usr/bin/nghttp"
    shown = subprocess.run(
        [nghttp, "-v", "-n", f"http://127.0.0.1:{api.port}/grpc.health.v1.Health/Check"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    settings = next(line for line in shown.stdout.splitlines() if "recv SETTINGS frame" in line)
    index = shown.stdout.splitlines().index(settings)
    following = "\n".join(shown.stdout.splitlines()[index : index + 6])
    assert f"SETTINGS_MAX_CONCURRENT_STREAMS(0x03):{MAX_CONCURRENT_STREAMS}" in following, following


def test_a_connection_is_told_to_go_once_it_is_old(
    toy_service: ModelService[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its age the server sends GOAWAY: a long-lived channel leaves its connection (READY to
    IDLE), to reconnect wherever the Service sends it next."""
    monkeypatch.setattr(grpc_api, "MAX_CONNECTION_AGE_SECONDS", 1)
    states: list[Any] = []
    with serving(toy_service) as api:
        api.infer(pb.ModelInferRequest(model_name="toy", inputs=[x_input(1.0)]))
        api.channel.subscribe(states.append)
        deadline = time.monotonic() + 20
        while grpc.ChannelConnectivity.IDLE not in states[1:] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert grpc.ChannelConnectivity.IDLE in states[1:], states
        api.infer(pb.ModelInferRequest(model_name="toy", inputs=[x_input(2.0)]))  # and reconnects
