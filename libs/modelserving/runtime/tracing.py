"""Traces with OpenTelemetry: off, and free, unless an OTLP endpoint is configured.

The standard `OTEL_*` variables configure it (validated with the other settings, `Settings.otel_*`):
an exporter endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns
it on, `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` choose what is kept (`parentbased_traceidratio`
with 0.01 keeps 1 % of traces, and whatever a caller's sampled `traceparent` asks for), and
`OTEL_SERVICE_NAME` (the model's name by default) and `OTEL_RESOURCE_ATTRIBUTES` name the
process. OpenTelemetry's SDK reads them itself; spans leave through its OTLP/HTTP exporter,
from its bounded batch processor (a span that finds the queue full is dropped, never waited for).

The transports' instrumentations (OpenTelemetry's FastAPI and gRPC ones, `modelserving.rest.app`
and `modelserving.grpc.server`) make each request's span, a child of an incoming W3C
`traceparent`. `Tracing` adds what only the data plane knows, under it:
- `queue`: the request's wait for the model, from its admission to the batch that took it;
- `batch`: one model call's batch (its rows and requests), linked to every request span it
  served, and a child of the first sampled one;
- `predict`: the model call itself, in the batch.
A request nobody samples gets no spans of its own: only its span's context is kept, for the links.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, Span, SpanKind

from modelserving.runtime.logs import request_id
from modelserving.settings import Settings

REQUEST_ID = "modelserving.request_id"  # the span attribute holding a request's X-Request-ID
BATCH_ROWS = "modelserving.batch.rows"
BATCH_REQUESTS = "modelserving.batch.requests"


def tracing_enabled(settings: Settings) -> bool:
    """Whether the settings ask for traces: an OTLP endpoint, and neither the SDK nor its trace
    exporter switched off."""
    endpoint = settings.otel_exporter_otlp_traces_endpoint or settings.otel_exporter_otlp_endpoint
    return bool(endpoint) and not settings.otel_sdk_disabled and settings.otel_traces_exporter != "none"


@dataclass(frozen=True)
class RequestTrace:
    """One request's place in the trace: its span (maybe not sampled), and its `queue` span if sampled."""

    request: Span
    queue: Span | None


class Tracing:
    """A worker's tracer provider, and the data plane's spans (`queued`, `taken`, `batch`, `model_call`)."""

    def __init__(
        self, model: str, version: str | None = None, provider: TracerProvider | None = None
    ) -> None:
        self.model = model
        self.version = version
        self.provider = provider or TracerProvider(resource=Resource.create({SERVICE_NAME: model}))
        self._tracer = self.provider.get_tracer("modelserving")

    @classmethod
    def from_settings(cls, model: str, settings: Settings) -> Tracing | None:
        """A worker's tracing, exporting over OTLP/HTTP, or None when the settings ask for none."""
        if not tracing_enabled(settings):
            return None
        # Imported only when on: the exporter brings requests and the OTLP messages.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # The SDK adds OTEL_RESOURCE_ATTRIBUTES; its service.name would be "unknown_service".
        name = settings.otel_service_name or model
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(model, provider=provider)

    def shutdown(self) -> None:
        """Export what is buffered, then stop (at the worker's end)."""
        self.provider.shutdown()

    def tag_request(self) -> None:
        """Put the current request's id on its span (the transport's), if it is sampled."""
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(REQUEST_ID, request_id.get())

    def queued(self) -> RequestTrace:
        """On the event loop, as a request joins the queue: its `queue` span starts, if sampled."""
        span = trace.get_current_span()
        if not span.is_recording():
            return RequestTrace(span, None)
        wait = self._tracer.start_span(
            "queue", context=trace.set_span_in_context(span), attributes={REQUEST_ID: request_id.get()}
        )
        return RequestTrace(span, wait)

    @staticmethod
    def taken(request: RequestTrace | None) -> None:
        """On the inference thread: the model took the request (or dropped it)."""
        if request is not None and request.queue is not None:
            request.queue.end()

    @contextmanager
    def batch(self, requests: Sequence[RequestTrace | None], rows: int) -> Iterator[Span | None]:
        """The `batch` span around one model call's batch, if any of its requests is sampled."""
        traced = [request for request in requests if request is not None]
        sampled = next((request.request for request in traced if request.request.is_recording()), None)
        if sampled is None:
            yield None
            return
        links = [Link(request.request.get_span_context()) for request in traced]
        attributes: dict[str, str | int] = {
            BATCH_ROWS: rows,
            BATCH_REQUESTS: len(requests),
            "modelserving.model": self.model,
        }
        with self._tracer.start_as_current_span(
            "batch",
            context=trace.set_span_in_context(sampled),
            kind=SpanKind.INTERNAL,
            links=links,
            attributes=attributes,
        ) as span:
            yield span

    @contextmanager
    def model_call(self, batch: Span | None, rows: int) -> Iterator[None]:
        """The `predict` span around one call of the model, in `batch` (none if the batch has none)."""
        if batch is None:
            yield
            return
        attributes: dict[str, str | int] = {"modelserving.model": self.model, BATCH_ROWS: rows}
        if self.version:
            attributes["modelserving.model_version"] = self.version
        with self._tracer.start_as_current_span(
            "predict", context=trace.set_span_in_context(batch), attributes=attributes
        ):
            yield
