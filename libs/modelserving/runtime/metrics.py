"""Prometheus metrics every service exports at GET /metrics.

Route labels are route templates (`/v2/models/{model_name}/infer`), never raw
paths, and unknown paths share one label, so label cardinality stays bounded
whatever clients send. With several workers, `serve` points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before they start, and /metrics
adds up every worker's numbers (prometheus-client's multiprocess mode) rather
than showing whichever worker answered the scrape.
"""

import os
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.responses import Response
from starlette.types import Scope

from modelserving.formats.artifacts import LoadedModel
from modelserving.service import ModelService

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE = "<unmatched>"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)

REQUESTS = Counter("http_requests_total", "HTTP requests answered.", ["method", "route", "status"])
REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge("http_requests_in_flight", "HTTP requests being answered.", multiprocess_mode="livesum")
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "gRPC calls answered, by method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
GRPC_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time to answer a gRPC call.",
    ["grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
)
PREDICTIONS = Counter("model_predictions_total", "Rows predicted.", ["model", "version"])
INFERENCE_SECONDS = Histogram(
    "model_inference_duration_seconds", "Time the model takes per call.", ["model"], buckets=LATENCY_BUCKETS
)
BATCH_SIZE = Histogram("model_batch_size", "Rows per prediction call.", ["model"], buckets=BATCH_BUCKETS)
SHED = Counter(
    "model_requests_shed_total",
    "Inference requests answered without a prediction, by reason: overloaded (refused at admission), "
    "deadline (expired while queued), cancelled (the caller left), unavailable (the model is not "
    "responding).",
    ["model", "reason"],
)
SHED_REASONS = ("overloaded", "deadline", "cancelled", "unavailable")
INFERENCE_IN_FLIGHT = Gauge(
    "model_requests_in_flight",
    "Inference requests admitted and not yet answered.",
    ["model"],
    multiprocess_mode="livesum",
)
ADMISSION_LIMIT = Gauge(
    "model_admission_limit",
    "Inference requests a worker admits at once (runtime/admission.py); summed over a pod's workers.",
    ["model"],
    multiprocess_mode="livesum",
)
QUEUE_SECONDS = Histogram(
    "model_queue_duration_seconds",
    "Time from a request's admission until the model took it (or its deadline passed).",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
MODEL_LOAD_SECONDS = Gauge(
    "model_load_seconds",
    "Time taken to verify and load the model.",
    ["model", "version"],
    multiprocess_mode="max",
)


def route_label(scope: Scope) -> str:
    """The template of the route that handled the request, or one shared label for unknown paths."""
    route = scope.get("route")
    return getattr(route, "path", None) or UNMATCHED_ROUTE


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "OTHER"


def observe_request(scope: Scope, status: int, seconds: float) -> None:
    labels = (method_label(scope["method"]), route_label(scope), str(status))
    REQUESTS.labels(*labels).inc()
    REQUEST_SECONDS.labels(*labels).observe(seconds)


def observe_rpc(service: str, method: str, code: str, seconds: float) -> None:
    GRPC_HANDLED.labels(service, method, code).inc()
    GRPC_HANDLING_SECONDS.labels(service, method).observe(seconds)


def predict(service: ModelService[Any, Any], model: LoadedModel, rows: Sequence[Any]) -> Any:
    """Run the service's predict function, recording rows, batch size and inference time."""
    started = time.perf_counter()
    response = service.predict(model, rows)
    INFERENCE_SECONDS.labels(service.name).observe(time.perf_counter() - started)
    BATCH_SIZE.labels(service.name).observe(len(rows))
    PREDICTIONS.labels(service.name, model.card.version).inc(len(rows))
    return response


class AdmissionMetrics:
    """One model's admission figures, their label children bound once (they are on every request's path)."""

    def __init__(self, model: str) -> None:
        self._shed = {reason: SHED.labels(model, reason) for reason in SHED_REASONS}
        self.in_flight = INFERENCE_IN_FLIGHT.labels(model)
        self.limit = ADMISSION_LIMIT.labels(model)
        self.queue_seconds = QUEUE_SECONDS.labels(model)

    def shed(self, reason: str) -> None:
        self._shed[reason].inc()


def metrics_response() -> Response:
    if os.environ.get(MULTIPROCESS_DIR):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
