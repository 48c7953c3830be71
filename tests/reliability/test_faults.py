"""Faults injected into a toy service served for real (REST and gRPC): each one fails only the
callers it concerns, says so, and leaves the worker serving, or, for a hung or dead model,
fails liveness so that Kubernetes restarts it."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import]
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import]
from inference_grpc import grpc_predict_v2_pb2 as pb  # pants: no-infer-dep (compiled in the build)

from modelserving.dev.testing import metric_value, raised
from modelserving.grpc.server import MAX_HEALTH_WATCHES
from reliability.faulty_model import BAD_X, Faults, Served, serving

INFER = "/inference.GRPCInferenceService/ModelInfer"
Record = Callable[[str, object], None]


def wait_until(condition: Callable[[], object], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def infer_request(*xs: float) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="x", datatype="FP64", shape=[len(xs)], contents=pb.InferTensorContents(fp64_contents=xs)
    )
    return pb.ModelInferRequest(model_name="toy", inputs=[tensor])


def grpc_infer(channel: Any) -> Any:
    return channel.unary_unary(
        INFER,
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )


def shed(served: Served, reason: str) -> float:
    text = httpx.get(served.url + "/metrics").text
    return metric_value(text, "model_requests_shed_total", model="toy", reason=reason)


def grpc_handled(served: Served, code: str) -> float:
    text = httpx.get(served.url + "/metrics").text
    return metric_value(text, "grpc_server_handled_total", grpc_method="ModelInfer", grpc_code=code)


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(8) as executor:
        yield executor


def held_first_call(served: Served, pool: ThreadPoolExecutor) -> Any:
    """A request the model holds (until `faults.release` is set), so that others queue behind it."""
    served.faults.release.clear()
    first = pool.submit(served.post, [{"x": 1.0}])
    assert served.faults.running.wait(10), "the model was never called"
    return first


def test_one_callers_bad_row_fails_that_caller_only(
    tmp_path: Path, faults: Faults, pool: ThreadPoolExecutor, record_property: Record
) -> None:
    with serving(tmp_path, faults) as served:
        first = held_first_call(served, pool)
        queued = {x: pool.submit(served.post, [{"x": x}]) for x in (2.0, BAD_X, 4.0)}
        wait_until(lambda: served.plane.queued_rows == 3)  # all three queued: one batch when released
        faults.release.set()
        statuses = {x: future.result(10).status_code for x, future in queued.items()}
        assert first.result(10).status_code == 200
        assert statuses == {2.0: 200, BAD_X: 500, 4.0: 200}
        assert queued[2.0].result().json()["predictions"] == [{"value": 6.0}]
        assert queued[4.0].result().json()["predictions"] == [{"value": 12.0}]
        assert sorted(faults.calls[1]) == [2.0, 4.0, BAD_X]  # one batch, failed: then each alone
        assert sorted(faults.calls[2:]) == [[2.0], [4.0], [BAD_X]]
        assert served.post([{"x": 5.0}]).status_code == 200  # and the worker serves on
        record_property("statuses", statuses)


@pytest.mark.parametrize("alone_too", [False, True], ids=["batches miscounted", "every call miscounted"])
def test_a_model_returning_a_wrong_number_of_predictions_gives_nobody_anothers_answer(
    tmp_path: Path,
    faults: Faults,
    pool: ThreadPoolExecutor,
    caplog: pytest.LogCaptureFixture,
    alone_too: bool,
    record_property: Record,
) -> None:
    caplog.set_level(logging.ERROR, logger="modelserving")
    with serving(tmp_path, faults) as served:
        first = held_first_call(served, pool)
        queued = {x: pool.submit(served.post, [{"x": x}] * (2 if alone_too else 1)) for x in (2.0, 3.0)}
        wait_until(lambda: served.plane.admission.in_flight == 3)
        faults.miscount = True
        faults.release.set()
        first.result(10)
        for x, future in queued.items():
            response = future.result(10)
            if alone_too:  # two rows alone, one prediction: a 500, never a neighbour's answer
                assert response.status_code == 500, response.text
            else:
                assert response.json()["predictions"] == [{"value": 3 * x}]
        assert "predictions for" in caplog.text and "rows; the call fails" in caplog.text
        record_property("statuses", [future.result().status_code for future in queued.values()])


def test_a_hung_model_fails_liveness_and_its_waiting_callers_get_503_at_once(
    tmp_path: Path, faults: Faults, pool: ThreadPoolExecutor, record_property: Record
) -> None:
    with serving(tmp_path, faults, max_call_seconds=0.5) as served, served.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
        hung = held_first_call(served, pool)
        started = time.monotonic()
        waiting = pool.submit(served.post, [{"x": 2.0}])
        answered = waiting.result(10)
        detected = time.monotonic() - started
        assert answered.status_code == 503 and "not responding" in answered.json()["error"]
        assert answered.headers["retry-after"] == "1"
        assert httpx.get(served.url + "/livez").status_code == 503
        assert httpx.get(served.url + "/v2/health/live").status_code == 503
        assert (
            health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        )
        refused = served.post([{"x": 3.0}])  # a newcomer is refused at once, not queued
        assert refused.status_code == 503 and "not responding" in refused.text
        faults.release.set()  # the call returns: the model responds again
        assert hung.result(10).status_code == 200
        wait_until(lambda: httpx.get(served.url + "/livez").status_code == 200)
        assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
        assert 2.0 not in faults.predicted() and 3.0 not in faults.predicted()
        record_property("seconds_to_fail_liveness", round(detected, 2))


def test_a_model_hung_on_the_event_loop_fails_liveness_by_timing_out(
    tmp_path: Path, faults: Faults, pool: ThreadPoolExecutor
) -> None:
    """What a service trades for `predict_inline_rows`: a call made on the event loop that hangs
    holds the worker, so its probes time out (a liveness failure all the same) instead of
    answering 503; released, the worker serves again."""
    with serving(tmp_path, faults, predict_inline_rows=1) as served:
        hung = held_first_call(served, pool)
        assert faults.threads == {"uvicorn"}  # the server's event loop, not the inference thread
        with pytest.raises(httpx.TimeoutException):
            httpx.get(served.url + "/livez", timeout=0.5)
        faults.release.set()
        assert hung.result(10).status_code == 200
        assert httpx.get(served.url + "/livez").status_code == 200


def test_a_dead_inference_thread_fails_liveness(tmp_path: Path, faults: Faults) -> None:
    with serving(tmp_path, faults) as served:
        assert httpx.get(served.url + "/livez").status_code == 200
        dead = threading.Thread(target=lambda: None)
        dead.start()
        dead.join()
        served.plane._queue._thread = dead  # the fault: its thread is gone
        wait_until(lambda: httpx.get(served.url + "/livez").status_code == 503)
        response = served.post([{"x": 2.0}])
        assert response.status_code == 503 and "not responding" in response.text


def test_a_caller_that_leaves_is_never_predicted(
    tmp_path: Path, faults: Faults, pool: ThreadPoolExecutor, record_property: Record
) -> None:
    with serving(tmp_path, faults) as served, served.channel() as channel:
        before = shed(served, "cancelled"), grpc_handled(served, "CANCELLED")
        first = held_first_call(served, pool)
        body = json.dumps([{"x": 5.0}]).encode()
        host, port = served.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as caller:  # REST: leaves by closing
            caller.sendall(
                b"POST /scale HTTP/1.1\r\nhost: toy\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            wait_until(lambda: served.plane.admission.in_flight == 2)
        call = grpc_infer(channel).future(infer_request(6.0))  # gRPC: leaves by cancelling
        wait_until(lambda: served.plane.admission.in_flight == 3)  # (the REST one is held until answered)
        call.cancel()
        time.sleep(0.2)  # the server hears of both
        faults.release.set()
        assert first.result(10).status_code == 200
        assert served.post([{"x": 7.0}]).status_code == 200
        assert faults.predicted() == [1.0, 7.0]
        after = shed(served, "cancelled"), grpc_handled(served, "CANCELLED")
        assert after[0] - before[0] == 2
        assert after[1] - before[1] == 1
        record_property("shed_cancelled", after[0] - before[0])


def test_a_request_past_its_deadline_is_answered_504_or_deadline_exceeded_never_predicted(
    tmp_path: Path, faults: Faults, pool: ThreadPoolExecutor, record_property: Record
) -> None:
    with serving(tmp_path, faults) as served, served.channel() as channel:
        before = shed(served, "deadline"), grpc_handled(served, "DEADLINE_EXCEEDED")
        first = held_first_call(served, pool)
        late = pool.submit(served.post, [{"x": 8.0}], headers={"x-request-timeout-ms": "200"})
        with pytest.raises(grpc.RpcError) as expired:
            grpc_infer(channel)(infer_request(9.0), timeout=0.3)
        assert raised(expired).code() == grpc.StatusCode.DEADLINE_EXCEEDED
        faults.release.set()
        first.result(10)
        answered = late.result(10)
        assert answered.status_code == 504, answered.text
        assert "deadline exceeded" in answered.json()["error"]
        assert 8.0 not in faults.predicted() and 9.0 not in faults.predicted()
        # The server records the expired call once it notices: on a busy machine, not at once.
        wait_until(lambda: grpc_handled(served, "DEADLINE_EXCEEDED") - before[1] >= 1)
        after = shed(served, "deadline"), grpc_handled(served, "DEADLINE_EXCEEDED")
        assert after[0] - before[0] >= 1
        assert after[1] - before[1] == 1
        record_property("rest_status", answered.status_code)


def test_past_its_limit_a_worker_refuses_at_once_over_rest_and_grpc(
    tmp_path: Path, faults: Faults, pool: ThreadPoolExecutor, record_property: Record
) -> None:
    with serving(
        tmp_path, faults, max_concurrent_requests=1, adaptive_concurrency=False
    ) as served, served.channel() as channel:
        first = held_first_call(served, pool)
        typed = served.post([{"x": 2.0}], headers={"x-request-id": "refused-1"})
        assert typed.status_code == 503 and typed.headers["retry-after"] == "1"
        message = "model 'toy' is at its limit of 1 requests in flight; retry later"
        assert typed.json() == {"error": message, "status": 503, "request_id": "refused-1", "fields": []}
        v2 = httpx.post(
            served.url + "/v2/models/toy/infer",
            json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [2.0]}]},
        )
        assert (v2.status_code, v2.json(), v2.headers["retry-after"]) == (503, {"error": message}, "1")
        with pytest.raises(grpc.RpcError) as unavailable:
            grpc_infer(channel)(infer_request(2.0), timeout=10)
        assert raised(unavailable).code() == grpc.StatusCode.UNAVAILABLE
        assert raised(unavailable).details() == message
        assert ("grpc-retry-pushback-ms", "1000") in raised(unavailable).trailing_metadata()
        # Refused as its headers arrived: its body is read and dropped, its connection kept.
        host, port = served.url.removeprefix("http://").split(":")
        body = json.dumps([{"x": 3.0}] * 1000).encode()
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(
                b"POST /scale HTTP/1.1\r\nhost: toy\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
                + b"GET /livez HTTP/1.1\r\nhost: toy\r\n\r\n"
            )
            replies = b""
            while replies.count(b"HTTP/1.1 ") < 2 or not replies.endswith(b"}"):
                replies += connection.recv(65536)
        assert replies.startswith(b"HTTP/1.1 503 ") and b'{"status":"alive"}' in replies
        faults.release.set()
        assert first.result(10).status_code == 200
        assert faults.predicted() == [1.0]
        record_property("refused", ["typed", "v2", "grpc", "raw"])


def test_health_watches_are_bounded_and_end_at_shutdown(tmp_path: Path, faults: Faults) -> None:
    with serving(tmp_path, faults) as served:
        # A connection per watch (channels of their own subchannels): one carries only so many
        # streams (MAX_CONCURRENT_STREAMS).
        own = [("grpc.use_local_subchannel_pool", 1)]
        channels = [
            grpc.insecure_channel(served.grpc_target, options=own) for _ in range(MAX_HEALTH_WATCHES + 1)
        ]
        watches = [
            health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            for channel in channels[:-1]
        ]
        for watch in watches:
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as refused:
            next(health_pb2_grpc.HealthStub(channels[-1]).Watch(health_pb2.HealthCheckRequest(), timeout=10))
        assert raised(refused).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        stopping = time.monotonic()
    stopped = time.monotonic() - stopping
    endings = [list(watch) for watch in watches]  # each saw NOT_SERVING, then its stream ended
    for channel in channels:
        channel.close()
    assert all(
        ending and ending[-1].status == health_pb2.HealthCheckResponse.NOT_SERVING for ending in endings
    ), endings
    assert stopped < 10, f"the open watches held the shutdown up for {stopped:.1f} s"
