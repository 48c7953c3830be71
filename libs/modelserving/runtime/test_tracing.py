"""Tracing's spans in the data plane: each request's queue wait, and each batch and model call,
linked to every request span the batch served; nothing for requests nobody samples; and the
OTEL_* settings that turn it on, or stop start-up in one line."""

import asyncio
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from modelserving.runtime.logs import request_id
from modelserving.runtime.test_batching import Model, predictions, running
from modelserving.runtime.tracing import BATCH_REQUESTS, BATCH_ROWS, REQUEST_ID, Tracing, tracing_enabled
from modelserving.settings import Settings, SettingsError, load_settings


@pytest.fixture
def exported() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing("doubler", "7", provider), exporter


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def attribute(span: ReadableSpan, key: str) -> int | str:
    value = dict(span.attributes or {})[key]
    assert isinstance(value, int | str), value
    return value


async def traced_request(
    tracing: Tracing, queue: Any, rows: list[int], rid: str, sampled: bool = True
) -> Any:
    """`rows` submitted inside a request span, as the transports' instrumentation makes one; a
    request nobody samples has a span that records nothing (its context only)."""
    request_id.set(rid)
    if sampled:
        with tracing.provider.get_tracer("transport").start_as_current_span(f"request {rid}") as span:
            return span.get_span_context(), await queue.submit(rows, alone=False)
    context = SpanContext(
        trace_id=int(rid, 16), span_id=int(rid, 16), is_remote=True, trace_flags=TraceFlags(0)
    )
    with trace.use_span(NonRecordingSpan(context)):
        return context, await queue.submit(rows, alone=False)


def test_a_batch_links_every_request_it_served_and_each_request_has_its_wait(
    exported: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = exported
    model = Model()

    async def scenario() -> list[Any]:
        async with running(model, tracing=tracing) as queue:
            model.release.clear()  # the first request holds the model: the next three batch up
            first = asyncio.create_task(traced_request(tracing, queue, [1], "a1"))
            await asyncio.to_thread(model.running.wait, 5)
            waiting = [
                asyncio.create_task(traced_request(tracing, queue, [2, 3], "b2")),
                asyncio.create_task(traced_request(tracing, queue, [4], "c3")),
                asyncio.create_task(traced_request(tracing, queue, [5], "d4", sampled=False)),
            ]
            await asyncio.sleep(0.05)
            model.release.set()
            return [await first, *[await task for task in waiting]]

    results = asyncio.run(scenario())
    assert model.calls == [1, 4]
    assert [predictions(response) for _, response in results] == [[2], [4, 6], [8], [10]]
    spans = exporter.get_finished_spans()
    requests = {span.name.split()[1]: span for span in spans if span.name.startswith("request ")}
    assert sorted(requests) == ["a1", "b2", "c3"]  # the unsampled one recorded nothing

    queues = named(spans, "queue")
    assert sorted(attribute(span, REQUEST_ID) for span in queues) == ["a1", "b2", "c3"]
    for wait in queues:
        owner = requests[str(attribute(wait, REQUEST_ID))]
        assert wait.parent is not None and wait.parent.span_id == owner.context.span_id

    batches = sorted(named(spans, "batch"), key=lambda span: attribute(span, BATCH_ROWS))
    assert [(attribute(span, BATCH_ROWS), attribute(span, BATCH_REQUESTS)) for span in batches] == [
        (1, 1),
        (4, 3),
    ]
    served = batches[1]
    linked = {link.context.span_id for link in served.links}
    assert linked == {context.span_id for context, _ in results[1:]}  # the unsampled one's too
    assert served.parent is not None and served.parent.span_id == requests["b2"].context.span_id

    calls = named(spans, "predict")
    assert sorted(attribute(span, BATCH_ROWS) for span in calls) == [1, 4]
    assert {span.parent.span_id for span in calls if span.parent} == {
        batch.context.span_id for batch in batches
    }
    assert all(attribute(span, "modelserving.model_version") == "7" for span in calls)


def test_requests_nobody_samples_make_no_spans(exported: tuple[Tracing, InMemorySpanExporter]) -> None:
    tracing, exporter = exported

    async def scenario() -> None:
        async with running(Model(), tracing=tracing) as queue:
            await asyncio.gather(
                *(traced_request(tracing, queue, [n], f"e{n}", sampled=False) for n in range(5))
            )

    asyncio.run(scenario())
    assert exporter.get_finished_spans() == ()


def test_a_call_on_the_event_loop_is_traced_alike(exported: tuple[Tracing, InMemorySpanExporter]) -> None:
    tracing, exporter = exported

    async def scenario() -> Any:
        async with running(Model(), tracing=tracing, inline_rows=4) as queue:
            request_id.set("f5")
            with tracing.provider.get_tracer("transport").start_as_current_span("request") as span:
                assert predictions(await queue.submit([1, 2], alone=True)) == [2, 4]
                return span

    span = asyncio.run(scenario())
    names = sorted(span.name for span in exporter.get_finished_spans())
    assert names == ["batch", "predict", "queue", "request"]
    (batch,) = named(exporter.get_finished_spans(), "batch")
    assert [link.context.span_id for link in batch.links] == [span.get_span_context().span_id]


def test_a_failing_model_call_is_an_error_in_its_span(exported: tuple[Tracing, InMemorySpanExporter]) -> None:
    tracing, exporter = exported

    async def scenario() -> None:
        async with running(Model(fail_on=3), tracing=tracing) as queue:
            await traced_request(tracing, queue, [3], "a7")

    with pytest.raises(ValueError):
        asyncio.run(scenario())
    (call,) = named(exporter.get_finished_spans(), "predict")
    assert call.status.status_code is trace.StatusCode.ERROR


def test_off_without_an_endpoint_and_on_with_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not tracing_enabled(Settings())
    assert tracing_enabled(Settings(otel_exporter_otlp_endpoint="http://collector:4318"))
    assert tracing_enabled(Settings(otel_exporter_otlp_traces_endpoint="http://collector:4318/v1/traces"))
    assert not tracing_enabled(
        Settings(otel_exporter_otlp_endpoint="http://collector:4318", otel_sdk_disabled=True)
    )
    assert not tracing_enabled(
        Settings(otel_exporter_otlp_endpoint="http://collector:4318", otel_traces_exporter="none")
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert tracing_enabled(load_settings())


@pytest.mark.parametrize(
    "variable, value",
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
        ("OTEL_TRACES_EXPORTER", "jaeger"),
    ],
)
def test_a_bad_otel_setting_stops_start_up_in_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    message = str(refused.value)
    assert variable in message and "\n" not in message


@pytest.mark.parametrize("service_name, name", [(None, "doubler"), ("doubler-canary", "doubler-canary")])
def test_the_traces_service_is_the_model_unless_otel_service_name_says(
    service_name: str | None, name: str
) -> None:
    settings = Settings(otel_exporter_otlp_endpoint="http://collector:4318", otel_service_name=service_name)
    tracing = Tracing.from_settings("doubler", settings)
    assert tracing is not None
    try:
        assert tracing.provider.resource.attributes["service.name"] == name
    finally:
        tracing.shutdown()
