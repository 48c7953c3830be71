"""Traces from titanic's real image, through OpenTelemetry's real OTLP/HTTP exporter (issue #28).

The image runs under the Pod's flags with OTEL_EXPORTER_OTLP_ENDPOINT naming a collector in this
test: an HTTP server that takes what the exporter posts to /v1/traces and decodes it with OTLP's
own messages (opentelemetry-proto). Requests carry a W3C `traceparent` (a REST header, gRPC
metadata) and an X-Request-ID, and the test checks, from the decoded spans:
- the transport's server span is a child of the caller's span, in the caller's trace, and holds
  the request id;
- under it, the request's `queue` span; the `batch` that served it links to it; the `predict`
  span (the model call) is the batch's child;
- under concurrent load, every request's span is linked by exactly one batch, and each batch
  links as many requests as it says it served.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import tritonclient.grpc as triton  # type: ignore[import]
from clients.tensors import inputs_for
from containers.engine import docker_client
from containers.harness import AUTHORIZED, SERVICES, TOKEN, run_image
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from modelserving.dev.testing import example_rows

NAME = "titanic"
REQUEST_ID = "modelserving.request_id"
CONCURRENT_REQUESTS = 24


class Collector:
    """An OTLP/HTTP trace receiver on loopback: every span posted to it, decoded."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.services: set[str] = set()  # the resources' service.name
        self.changed = threading.Condition()
        collector = self

        class Receive(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # (http.server's name)
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                with collector.changed:
                    for resource in request.resource_spans:
                        collector.services |= {
                            pair.value.string_value
                            for pair in resource.resource.attributes
                            if pair.key == "service.name"
                        }
                        for scope in resource.scope_spans:
                            collector.spans.extend(scope.spans)
                    collector.changed.notify_all()
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Receive)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def trace(self, trace_id: bytes, spans: int, timeout: float = 30) -> list[Any]:
        """The spans of one trace, once at least `spans` of them have arrived."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [span for span in self.spans if span.trace_id == trace_id]
                if len(found) >= spans or time.monotonic() > deadline:
                    return found
                self.changed.wait(0.5)


@pytest.fixture(scope="module")
def traced() -> Iterator[tuple[Collector, str, str]]:
    collector = Collector()
    with ExitStack() as stack:
        url, address = run_image(
            docker_client(),
            NAME,
            {"ALLOW_UNAUTHENTICATED": "false"},
            stack,
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
            OTEL_BSP_SCHEDULE_DELAY="100",  # ms between exports: the test waits less
        )
        yield collector, url, address
    collector.server.shutdown()


def new_parent() -> tuple[str, bytes, bytes]:
    """A caller's sampled `traceparent`, with its trace id and span id as OTLP carries them."""
    trace_id, span_id = secrets.token_bytes(16), secrets.token_bytes(8)
    return f"00-{trace_id.hex()}-{span_id.hex()}-01", trace_id, span_id


def rest_request(url: str, traceparent: str, rid: str) -> None:
    service = SERVICES[NAME]
    headers = {
        "content-type": "application/json",
        "traceparent": traceparent,
        "x-request-id": rid,
        **AUTHORIZED,
    }
    body = json.dumps(example_rows(service)).encode()
    request = urllib.request.Request(url + service.predict_path, body, headers)
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def grpc_request(address: str, traceparent: str, rid: str) -> None:
    client = triton.InferenceServerClient(address)
    try:
        headers = {"traceparent": traceparent, "x-request-id": rid, "authorization": f"Bearer {TOKEN}"}
        client.infer(NAME, inputs_for(triton, example_rows(SERVICES[NAME])), headers=headers)
    finally:
        client.close()


def attribute(span: Any, key: str) -> Any:
    for pair in span.attributes:
        if pair.key == key:
            return pair.value.string_value or pair.value.int_value
    return None


def one(spans: list[Any], name: str) -> Any:
    named = [span for span in spans if span.name == name]
    assert len(named) == 1, f"{len(named)} {name!r} spans among {[span.name for span in spans]}"
    return named[0]


@pytest.mark.parametrize(
    "send, server_span",
    [
        (rest_request, f"POST {SERVICES[NAME].predict_path}"),
        (grpc_request, "/inference.GRPCInferenceService/ModelInfer"),
    ],
    ids=["REST", "gRPC"],
)
def test_a_request_is_traced_under_its_callers_span(
    traced: tuple[Collector, str, str], send: Any, server_span: str
) -> None:
    collector, url, address = traced
    traceparent, trace_id, parent_id = new_parent()
    rid = f"trace-test-{secrets.token_hex(4)}"
    send(address if send is grpc_request else url, traceparent, rid)
    spans = collector.trace(trace_id, spans=4)
    server = one(spans, server_span)
    assert server.parent_span_id == parent_id
    assert attribute(server, REQUEST_ID) == rid
    queue = one(spans, "queue")
    assert queue.parent_span_id == server.span_id
    assert attribute(queue, REQUEST_ID) == rid
    batch = one(spans, "batch")
    assert server.span_id in {link.span_id for link in batch.links}
    assert attribute(batch, "modelserving.batch.rows") == len(example_rows(SERVICES[NAME]))
    predict = one(spans, "predict")
    assert predict.parent_span_id == batch.span_id
    assert collector.services == {NAME}  # OTEL_SERVICE_NAME unset: the model's name
    print(f"\n{server_span}: {[span.name for span in spans]}")


def test_under_load_each_request_is_linked_by_one_batch(traced: tuple[Collector, str, str]) -> None:
    collector, url, _ = traced
    parents = [new_parent() for _ in range(CONCURRENT_REQUESTS)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda parent: rest_request(url, parent[0], "load"), parents))
    # A batch is in the trace of the first request it served; the others' traces hold their
    # server and queue spans, and the batch's link.
    ours = {
        one(collector.trace(trace_id, spans=2), f"POST {SERVICES[NAME].predict_path}").span_id
        for _, trace_id, _ in parents
    }
    deadline = time.monotonic() + 30
    while True:
        batches = {span.span_id: span for span in list(collector.spans) if span.name == "batch"}
        linked = [link.span_id for batch in batches.values() for link in batch.links]
        if ours <= set(linked) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(span for span in linked if span in ours) == sorted(ours)  # each exactly once
    for batch in batches.values():
        assert len(batch.links) == attribute(batch, "modelserving.batch.requests")
    sizes = sorted(len(batch.links) for batch in batches.values() if batch.links[0].span_id in ours)
    print(f"\nrequests per batch: {sizes}")
