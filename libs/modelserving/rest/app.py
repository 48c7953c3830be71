"""The REST transport over a worker's data plane: a complete FastAPI app of thin routes.

`rest_app` puts every REST API over a `DataPlane` (the model, readiness, `predict`): the typed
predict route, the Open Inference Protocol's routes (`v2.py`), health checks and Kubernetes
probes, metrics (the typed route offers what it answered to the plane's shadow, if
SHADOW_URL is set); then error bodies, request ids, access logs, body limits and auth around
them. What starts and stops with the app (loading the model, gRPC beside it, the drain) is
the lifespan it is given (`modelserving.server.app`).
"""

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.models import Example
from pydantic import Field, TypeAdapter

from modelserving.http.admission import admitted
from modelserving.http.auth import UNAUTHORIZED, BearerAuth
from modelserving.http.bodies import documented_body, json_body, schema_components, validate_json
from modelserving.http.docs import extend_openapi, install_offline_docs
from modelserving.http.errors import ERROR_RESPONSES, ErrorBody, error_response, install_error_handlers
from modelserving.http.middleware import RequestContextMiddleware
from modelserving.http.routing import DirectRoute
from modelserving.rest.health import add_health_routes
from modelserving.rest.v2 import add_v2_routes
from modelserving.runtime.dataplane import DataPlane, NotReady
from modelserving.runtime.logs import request_id
from modelserving.runtime.metrics import Metrics
from modelserving.runtime.shadow import SHADOW_HEADER
from modelserving.runtime.tracing import Tracing

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def rest_app(plane: DataPlane, tokens: tuple[bytes, ...], lifespan: Lifespan) -> FastAPI:
    """The REST APIs over `plane`; `tokens` protect the prediction routes (none: open)."""
    service, config = plane.service, plane.settings
    app = FastAPI(
        title=service.title or f"{service.name} model service",
        description=service.description,
        version=config.app_revision,
        lifespan=lifespan,
        root_path=config.root_path,
        responses={500: {"model": ErrorBody, "description": "Unexpected error"}},
        docs_url=None,  # served from packaged assets below, not a CDN
        redoc_url=None,
    )
    app.state.plane = plane  # for operators' tools and tests: the worker's model and its queue
    install_offline_docs(app)
    install_error_handlers(app)
    # mypy 1.1 cannot match Starlette's ParamSpec-based middleware factory type.
    app.add_middleware(
        RequestContextMiddleware,  # type: ignore[arg-type,call-arg]
        metrics=plane.metrics,
        max_body_bytes=config.max_body_bytes,
        body_timeout_seconds=config.body_timeout_seconds,
        tracing=plane.tracing,
    )
    if plane.tracing is not None:
        instrument(app, plane.tracing)
    auth = BearerAuth(tokens) if tokens else None
    protect = [auth.dependency()] if auth else []

    # Each layer adds its routes to the app itself: FastAPI matches the routes of an included
    # router twice per request (to pick the router, then within it), here once.
    rows_adapter = add_typed_routes(app.router, plane, auth)
    extend_openapi(app, schema_components(rows_adapter))
    add_v2_routes(app, plane, auth)
    add_health_routes(app.router, plane)
    add_metrics_routes(app.router, plane.metrics, protect if config.metrics_require_token else [])
    return app


# Probes, health checks and scrapes: a trace of each would bury the requests worth tracing.
UNTRACED_PATHS = ("/livez", "/readyz", "/health_check", "/metrics", "/v2/health/")


def instrument(app: FastAPI, tracing: Tracing) -> None:
    """OpenTelemetry's FastAPI instrumentation: each request a server span, under its `traceparent`."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.metrics import NoOpMeterProvider

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=tracing.provider,
        meter_provider=NoOpMeterProvider(),  # the service's metrics are Prometheus' (runtime/metrics.py)
        excluded_urls=",".join(UNTRACED_PATHS),
        exclude_spans=["receive", "send"],  # a span per ASGI message: noise, at a cost per request
    )


def add_typed_routes(router: APIRouter, plane: DataPlane, auth: BearerAuth | None) -> TypeAdapter[list[Any]]:
    """The service's own predict route (a list of its typed rows in, its typed response out),
    behind `auth` if given; returns the adapter that reads its body. With SHADOW_URL set, each
    answered request is offered to the plane's shadow, unless it is itself a mirrored one."""
    service, config = plane.service, plane.settings
    shadow = plane.shadow
    # The body's item type is the service's, known at run time.
    rows_type: Any = Annotated[
        list[service.item_type],  # type: ignore[name-defined]
        Field(max_length=config.max_batch_size),
    ]
    rows_adapter: TypeAdapter[list[Any]] = TypeAdapter(rows_type)
    examples: dict[str, Example] = {
        "batch": {
            "summary": f"{len(service.examples)} rows",
            "value": [item.model_dump(mode="json") for item in service.examples],
        }
    }

    async def predict(request: Request) -> Response:
        if auth:
            auth.authorise(request)
        body = await json_body(request)
        with admitted(request, plane) as ticket:  # before parsing: a refusal costs little
            rows: list[Any] = validate_json(body, rows_adapter)
            try:
                response = await plane.predict(rows, ticket)
            except NotReady as error:
                return error_response(503, str(error))
        # Already the declared type: serialised straight to JSON, not validated again by FastAPI.
        answer = response.model_dump_json()
        if shadow is not None and SHADOW_HEADER not in request.headers:
            shadow.offer(body, request_id.get(), request.headers.get("authorization"), answer)
        return Response(answer, media_type="application/json")

    router.add_api_route(
        service.predict_path,
        predict,
        methods=["POST"],
        response_model=service.response_type,
        summary=service.predict_summary,
        description=f"At most {config.max_batch_size} rows per request.",
        responses={**ERROR_RESPONSES, **(UNAUTHORIZED if auth else {})},
        tags=list(service.tags) or ["prediction"],
        openapi_extra=documented_body(rows_adapter, examples=examples),
        dependencies=[auth.dependency()] if auth else [],  # documented; `predict` checks it
        route_class_override=DirectRoute,
    )
    return rows_adapter


def add_metrics_routes(router: APIRouter, metrics: Metrics, protect: Sequence[Any]) -> None:
    """Prometheus metrics, behind `protect` (auth) if given."""

    @router.get(
        "/metrics",
        tags=["monitoring"],
        response_class=Response,
        summary="Prometheus metrics",
        dependencies=list(protect),
        responses=UNAUTHORIZED if protect else None,
    )
    def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)
