"""Turns a `ModelService` into a complete FastAPI app.

`create_app` adds everything every service shares: the typed predict route,
the Open Inference Protocol (v2) routes, health checks, Kubernetes probes,
error bodies, request ids and access logs, and loading of the verified model.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Request, Response
from fastapi.openapi.models import Example
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, Field, TypeAdapter, create_model

from modelserving import metrics
from modelserving.artifacts import load_model
from modelserving.auth import UNAUTHORIZED, BearerAuth, configured_tokens
from modelserving.batching import InferenceQueue
from modelserving.bodies import documented_body, read_json, schema_components
from modelserving.docs import extend_openapi, install_offline_docs
from modelserving.errors import ERROR_RESPONSES, ErrorBody, error_response, install_error_handlers
from modelserving.middleware import RequestContextMiddleware
from modelserving.process import freeze_survivors, set_up_worker
from modelserving.protocol import HEADER_TIMEOUT_STATE
from modelserving.service import ModelService, Runtime
from modelserving.settings import Settings, load_settings
from modelserving.v2 import add_v2_routes, prediction_list_field

log = logging.getLogger("modelserving")


class ModelInfo(BaseModel):
    name: str = Field(examples=["titanic"])
    version: str = Field(examples=["1.0.0"])


def health_check_type(service: ModelService[Any, Any]) -> type[BaseModel]:
    """`GET /health_check`'s body: the original service's keys, then the newer ones beside them.

    The original (Titanic's first service) sent `health` ("OK"), `booted_at`, `version` (the
    app revision), `<name>_model_version` and three environment keys; monitors match on them.
    """
    version_type = service.version_type
    fields: dict[str, Any] = dict(
        health=(str, Field(examples=["OK"], description='"OK" once the model is ready, else "starting".')),
        booted_at=(datetime, ...),
        version=(str, Field(examples=["3f2c1e0"], description="The app revision (APP_REVISION).")),
        aws_region=(str | None, Field(examples=["eu-west-1"], description="AWS_REGION")),
        k8s_env=(str | None, Field(examples=["prod"], description="K8S_ENV")),
        python_env=(str, Field(examples=["prod"], description="PYTHON_ENV, else ENVIRONMENT")),
        **{
            f"{service.name}_model_version": (
                version_type | None,
                Field(examples=[version_type(1)], description="null until the model is loaded"),
            )
        },
        model=(ModelInfo, ...),
        app_revision=(str, Field(examples=["3f2c1e0"])),
        environment=(str, Field(examples=["dev"])),
    )
    health_check: type[BaseModel] = create_model("HealthCheck", **fields)
    return health_check


class Readiness(BaseModel):
    status: str = Field(examples=["ready"])


def create_app(service: ModelService[Any, Any], settings: Settings | None = None) -> FastAPI:
    config = settings or load_settings()
    model_dir = config.model_dir or service.model_dir
    runtime = Runtime(booted_at=datetime.now(UTC))
    set_up_worker(config)
    inference = _inference_queue(service, runtime, config)
    predict_rows = inference.infer

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        load_started = time.perf_counter()
        loaded = await asyncio.to_thread(
            load_model, model_dir, expected_name=service.name, artifact_format=service.artifact_format
        )
        service.model_version(loaded.card)  # a version clients could not be sent stops start-up here
        metrics.MODEL_LOAD_SECONDS.labels(service.name, loaded.card.version).set(
            time.perf_counter() - load_started
        )
        if service.prepare is not None:
            loaded = await asyncio.to_thread(service.prepare, loaded)
        await asyncio.to_thread(service.predict, loaded, list(service.examples))
        freeze_survivors()
        inference.start()
        runtime.model = loaded
        runtime.ready = True
        log.info("model ready", extra={"model": loaded.card.name, "version": loaded.card.version})
        yield {HEADER_TIMEOUT_STATE: config.header_timeout_seconds}  # to the server's connections
        runtime.ready = False
        runtime.draining = True
        inference.stop(timeout=config.graceful_shutdown_seconds)

    app = FastAPI(
        title=service.title or f"{service.name} model service",
        description=service.description,
        version=config.app_revision,
        lifespan=lifespan,
        responses={500: {"model": ErrorBody, "description": "Unexpected error"}},
        docs_url=None,  # served from packaged assets below, not a CDN
        redoc_url=None,
    )
    install_offline_docs(app)
    install_error_handlers(app)
    tokens = configured_tokens(config)
    protect = [BearerAuth(tokens).dependency()] if tokens else []
    # mypy 1.1 cannot match Starlette's ParamSpec-based middleware factory type.
    app.add_middleware(
        RequestContextMiddleware,  # type: ignore[arg-type,call-arg]
        max_body_bytes=config.max_body_bytes,
        body_timeout_seconds=config.body_timeout_seconds,
    )

    batch_example: dict[str, Example] = {
        "batch": {
            "summary": f"{len(service.examples)} rows",
            "value": [item.model_dump(mode="json") for item in service.examples],
        }
    }

    # The body's item type is the service's, known at run time.
    rows_type: Any = Annotated[
        list[service.item_type],  # type: ignore[name-defined]
        Field(max_length=config.max_batch_size),
    ]
    rows_adapter: TypeAdapter[list[Any]] = TypeAdapter(rows_type)

    async def predict(request: Request) -> Response:
        if runtime.model is None:
            return error_response(503, "model not loaded yet")
        rows: list[Any] = await read_json(request, rows_adapter)
        response = await predict_rows(rows)
        # Already the declared type: serialised straight to JSON, not validated again by FastAPI.
        return Response(response.model_dump_json(), media_type="application/json")

    app.add_api_route(
        service.predict_path,
        predict,
        methods=["POST"],
        response_model=service.response_type,
        summary=service.predict_summary,
        description=f"At most {config.max_batch_size} rows per request.",
        responses={**ERROR_RESPONSES, **(UNAUTHORIZED if protect else {})},
        tags=list(service.tags) or ["prediction"],
        openapi_extra=documented_body(rows_adapter, examples=batch_example),
        dependencies=protect,
    )
    extend_openapi(app, schema_components(rows_adapter))

    add_v2_routes(app, service, runtime, config, predict_rows, protect)

    metrics_protect = protect if config.metrics_require_token else []

    @app.get(
        "/metrics",
        tags=["monitoring"],
        response_class=Response,
        summary="Prometheus metrics",
        dependencies=metrics_protect,
        responses=UNAUTHORIZED if metrics_protect else None,
    )
    def prometheus_metrics() -> Response:
        return metrics.metrics_response()

    @app.get("/", include_in_schema=False)
    async def index() -> RedirectResponse:
        return RedirectResponse("/docs")

    health_type = health_check_type(service)

    @app.get("/health_check", tags=["health"], response_model=health_type)
    async def health_check() -> Any:
        card = runtime.model.card if runtime.model else None
        return {
            "health": "OK" if runtime.ready else "starting",
            "booted_at": runtime.booted_at,
            "version": config.app_revision,
            "aws_region": config.aws_region,
            "k8s_env": config.k8s_env,
            "python_env": config.python_env or config.environment,
            f"{service.name}_model_version": service.model_version(card) if card else None,
            "model": ModelInfo(name=service.name, version=card.version if card else "unloaded"),
            "app_revision": config.app_revision,
            "environment": config.environment,
        }

    @app.get("/health_check/load_balancer", tags=["health"], response_class=Response)
    async def load_balancer_check() -> Response:
        return Response(b"null", media_type="application/json")  # the original's body: JSON null

    @app.get("/livez", tags=["probes"], summary="The process is alive")
    async def livez() -> Readiness:
        return Readiness(status="alive")

    @app.get(
        "/readyz",
        tags=["probes"],
        summary="The model is loaded and warmed up",
        responses={503: {"model": Readiness, "description": "Starting or shutting down"}},
    )
    async def readyz() -> Any:
        if runtime.ready and not runtime.draining:
            return Readiness(status="ready")
        status = "shutting down" if runtime.draining else "starting"
        return JSONResponse({"status": status}, status_code=503)

    return app


def _inference_queue(service: ModelService[Any, Any], runtime: Runtime, config: Settings) -> InferenceQueue:
    """The worker's inference thread: the loaded model's responses, in batches if configured."""

    def run(rows: Sequence[Any]) -> BaseModel:
        assert runtime.model is not None, "predictions are only routed once the model is loaded"
        response: BaseModel = metrics.predict(service, runtime.model, rows)
        return response

    field, _ = prediction_list_field(service.response_type)
    return InferenceQueue(
        run,
        field,
        max_rows=config.max_batch_size,
        max_wait=config.batch_wait_microseconds / 1e6,
        batching=config.micro_batching,
        name=f"{service.name}-inference",
    )
