"""Prometheus metrics every service exports at GET /metrics, in a registry of their own.

`Metrics()` makes every metric in a fresh `CollectorRegistry` (or in the one it is given):
importing this module registers nothing, so the library's models and formats can live in a
process that has its own metrics of the same names (another server, a notebook, a batch job).
The data plane owns a worker's `Metrics`; the transports record into it.

Route labels are route templates (`/v2/models/{model_name}/infer`), never raw paths, and
unknown paths share one label, so label cardinality stays bounded whatever clients send.
With several workers, `serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before
they start, and `exposition()` adds up every worker's numbers (prometheus-client's
multiprocess mode) rather than showing whichever worker answered the scrape.
"""

import collections
import operator
import os
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from modelserving.outputs import ModelOutput

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
SHED_REASONS = ("overloaded", "deadline", "cancelled", "unavailable")
# What became of a request sampled for the shadow (runtime/shadow.py): compared with the
# candidate's answer, dropped (the queue was full, or shutdown came first), or the candidate's
# failure: no answer in time, no connection, a status other than 200, an answer not comparable.
SHADOW_OUTCOMES = ("compared", "dropped", "timeout", "unreachable", "rejected", "invalid")
# What became of a prediction sampled for payload logging (runtime/payloads.py): written to the
# file or accepted by the endpoint (2xx), dropped (the queue was full, or shutdown came first),
# or not written: no answer in time, no connection, a status other than 2xx, or any other failure.
PAYLOAD_OUTCOMES = ("logged", "dropped", "timeout", "unreachable", "rejected", "failed")


class Metrics:
    """Every metric of a worker, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        on = self.registry  # every metric below registers here
        self._prediction_children: dict[tuple[str, str], tuple[Histogram, Histogram, Counter]] = {}
        self.requests = Counter(
            "http_requests_total", "HTTP requests answered.", ["method", "route", "status"], registry=on
        )
        self.request_seconds = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=on,
        )
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "HTTP requests being answered.",
            multiprocess_mode="livesum",
            registry=on,
        )
        self.grpc_handled = Counter(
            "grpc_server_handled_total",
            "gRPC calls answered, by method and status code.",
            ["grpc_service", "grpc_method", "grpc_code"],
            registry=on,
        )
        self.grpc_handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time to answer a gRPC call.",
            ["grpc_service", "grpc_method"],
            buckets=LATENCY_BUCKETS,
            registry=on,
        )
        self.predictions = Counter(
            "model_predictions_total", "Rows predicted.", ["model", "version"], registry=on
        )
        self.inference_seconds = Histogram(
            "model_inference_duration_seconds",
            "Time the model takes per call.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=on,
        )
        self.batch_size = Histogram(
            "model_batch_size", "Rows per prediction call.", ["model"], buckets=BATCH_BUCKETS, registry=on
        )
        self.shed = Counter(
            "model_requests_shed_total",
            "Inference requests answered without a prediction, by reason: overloaded (refused at "
            "admission), deadline (expired while queued), cancelled (the caller left), unavailable "
            "(the model is not responding).",
            ["model", "reason"],
            registry=on,
        )
        self.inference_in_flight = Gauge(
            "model_requests_in_flight",
            "Inference requests admitted and not yet answered.",
            ["model"],
            multiprocess_mode="livesum",
            registry=on,
        )
        self.admission_limit = Gauge(
            "model_admission_limit",
            "Inference requests a worker admits at once (runtime/admission.py); summed over a pod's workers.",
            ["model"],
            multiprocess_mode="livesum",
            registry=on,
        )
        self.queue_seconds = Histogram(
            "model_queue_duration_seconds",
            "Time from a request's admission until the model took it (or its deadline passed).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=on,
        )
        self.outputs = Counter(
            "model_outputs_total",
            "Predictions served, by the bin of the output versions are compared by "
            "(ModelService.output): a classifier's class, or a score's range.",
            ["model", "version", "bin"],
            registry=on,
        )
        # Input drift (runtime/drift.py): live inputs by the bins of the model card's reference
        # distribution, beside each bin's reference share.
        self.input_rows = Counter(
            "model_input_rows",
            "Rows predicted, by input feature and the bin of the model card's reference "
            "distribution their value falls in (every bin made at 0 when the model loads).",
            ["model", "version", "feature", "bin"],
            registry=on,
        )
        self.input_reference = Gauge(
            "model_input_reference_ratio",
            "The share of the model's training rows in each bin of each input feature (its card's "
            "reference distribution), what model_input_rows_total is compared with.",
            ["model", "version", "feature", "bin"],
            multiprocess_mode="max",
            registry=on,
        )
        self.input_dropped = Counter(
            "model_input_rows_dropped",
            "Predicted rows not counted into model_input_rows_total: the counting backlog was full.",
            ["model", "version"],
            registry=on,
        )
        self.output_reference = Gauge(
            "model_output_reference_ratio",
            "The share of the model's training rows whose prediction falls in each bin of "
            "model_outputs_total (its card's reference distribution of scores).",
            ["model", "version", "bin"],
            multiprocess_mode="max",
            registry=on,
        )
        self.shadow_requests = Counter(
            "model_shadow_requests_total",
            "Requests sampled for mirroring to a candidate version (SHADOW_URL), by outcome: "
            + ", ".join(SHADOW_OUTCOMES)
            + "; version is this pod's model version.",
            ["model", "version", "outcome"],
            registry=on,
        )
        self.shadow_rows = Counter(
            "model_shadow_rows_total",
            "Predictions compared with a candidate version's for the same request, by whether they "
            "agreed (ModelService.output: the same class, or scores within its tolerance).",
            ["model", "version", "candidate_version", "agreed"],
            registry=on,
        )
        self.payload_events = Counter(
            "model_payload_events_total",
            "Answered predictions sampled for payload logging (PAYLOAD_LOG_URL or PAYLOAD_LOG_FILE), "
            "by outcome: " + ", ".join(PAYLOAD_OUTCOMES) + ".",
            ["model", "version", "outcome"],
            registry=on,
        )
        self.model_load_seconds = Gauge(
            "model_load_seconds",
            "Time taken to verify and load the model.",
            ["model", "version"],
            multiprocess_mode="max",
            registry=on,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.request_seconds.labels(*labels).observe(seconds)

    def observe_rpc(self, service: str, method: str, code: str, seconds: float) -> None:
        self.grpc_handled.labels(service, method, code).inc()
        self.grpc_handling_seconds.labels(service, method).observe(seconds)

    def observe_prediction(self, model: str, version: str, rows: int, seconds: float) -> None:
        """One model call: its rows, its batch size and its time."""
        children = self._prediction_children.get((model, version))
        if children is None:  # bound once per model version: this is on every call's path
            children = self._prediction_children[(model, version)] = (
                self.inference_seconds.labels(model),
                self.batch_size.labels(model),
                self.predictions.labels(model, version),
            )
        inference_seconds, batch_size, predictions = children
        inference_seconds.observe(seconds)
        batch_size.observe(rows)
        predictions.inc(rows)

    def output_counter(
        self, model: str, version: str, output: ModelOutput
    ) -> Callable[[Sequence[Any]], None]:
        """A function counting served predictions into `model_outputs_total` by the bin of their
        `output.field`, every bin's series made at once (at 0), so that a version's distribution
        has all its bins from the start."""
        children = {name: self.outputs.labels(model, version, name) for name in output.bins}
        bin_of, value_of = output.bin_of, operator.attrgetter(output.field)

        def count(predictions: Sequence[Any]) -> None:
            if len(predictions) == 1:  # the usual request, on its path: a third of the cost
                children[bin_of(value_of(predictions[0]))].inc()
                return
            for name, seen in collections.Counter(bin_of(value_of(p)) for p in predictions).items():
                children[name].inc(seen)

        return count

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type: every worker's, summed,
        in multiprocess mode."""
        registry = self.registry
        if os.environ.get(MULTIPROCESS_DIR):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST


class AdmissionMetrics:
    """One model's admission figures, their label children bound once (they are on every request's path)."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self._shed = {reason: metrics.shed.labels(model, reason) for reason in SHED_REASONS}
        self.in_flight = metrics.inference_in_flight.labels(model)
        self.limit = metrics.admission_limit.labels(model)
        self.queue_seconds = metrics.queue_seconds.labels(model)

    def shed(self, reason: str) -> None:
        self._shed[reason].inc()
