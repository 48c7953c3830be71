"""Turns a `ModelService` into a complete FastAPI app: a data plane and thin routers over it.

`create_app` builds the worker's `DataPlane` (the model, readiness, `infer`) and
puts every shared API over it: the typed predict route, the Open Inference
Protocol (v2, `v2.py`; over gRPC too when GRPC_PORT is set, `grpc_api.py`), health
checks and Kubernetes probes, metrics; then error bodies, request ids, access logs, body
limits and auth around them.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.models import Example
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, Field, TypeAdapter, create_model

from modelserving.http.admission import AdmissionGate, admitted
from modelserving.http.auth import UNAUTHORIZED, BearerAuth, configured_tokens
from modelserving.http.bodies import documented_body, json_body, schema_components, validate_json
from modelserving.http.docs import extend_openapi, install_offline_docs
from modelserving.http.errors import ERROR_RESPONSES, ErrorBody, error_response, install_error_handlers
from modelserving.http.middleware import RequestContextMiddleware
from modelserving.rest.v2 import add_v2_routes
from modelserving.runtime import metrics
from modelserving.runtime.dataplane import DataPlane, NotReady
from modelserving.runtime.process import on_termination, set_up_worker
from modelserving.server.uvicorn_protocol import ADMISSION_GATE_STATE, HEADER_TIMEOUT_STATE
from modelserving.service import ModelService
from modelserving.settings import Settings, load_settings


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
    set_up_worker(config)
    plane = DataPlane(service, config)
    tokens = configured_tokens(config)
    grpc_server = None
    if config.grpc_port:
        # Imported only when asked for: its messages take the protocol's package (`inference`) in
        # protobuf's default pool, as Triton's and KServe's clients do, and no process can hold two.
        from modelserving.grpc.server import GrpcServer

        grpc_server = GrpcServer(plane, config, tokens)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        if grpc_server:
            await grpc_server.start()
        await plane.load()
        if grpc_server:
            await grpc_server.serving()
        # One deadline for the whole drain, from SIGTERM: uvicorn drains HTTP meanwhile (its
        # timeout_graceful_shutdown), gRPC stops taking calls at once and finishes its own.
        drain: dict[str, Any] = {}

        def terminate() -> None:
            if drain:
                return
            drain["deadline"] = time.monotonic() + config.graceful_shutdown_seconds
            plane.shutting_down = True
            if grpc_server:
                drain["grpc"] = asyncio.ensure_future(grpc_server.stop(config.graceful_shutdown_seconds))

        with on_termination(terminate):
            yield {  # to the server's connections (modelserving.server.uvicorn_protocol)
                HEADER_TIMEOUT_STATE: config.header_timeout_seconds,
                ADMISSION_GATE_STATE: AdmissionGate(plane, service.predict_path, config.root_path),
            }
        terminate()
        if "grpc" in drain:
            await drain["grpc"]
        await plane.stop(max(0.0, drain["deadline"] - time.monotonic()))

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
        max_body_bytes=config.max_body_bytes,
        body_timeout_seconds=config.body_timeout_seconds,
    )
    protect = [BearerAuth(tokens).dependency()] if tokens else []

    # Each layer adds its routes to the app itself: FastAPI matches the routes of an included
    # router twice per request (to pick the router, then within it), here once.
    rows_adapter = add_typed_routes(app.router, plane, protect)
    extend_openapi(app, schema_components(rows_adapter))
    add_v2_routes(app, plane, protect)
    add_health_routes(app.router, plane)
    add_metrics_routes(app.router, protect if config.metrics_require_token else [])
    return app


def add_typed_routes(router: APIRouter, plane: DataPlane, protect: Sequence[Any]) -> TypeAdapter[list[Any]]:
    """The service's own predict route (a list of its typed rows in, its typed response out);
    returns the adapter that reads its body."""
    service, config = plane.service, plane.settings
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
        body = await json_body(request)
        async with admitted(request, plane) as ticket:  # before parsing: a refusal costs little
            rows: list[Any] = validate_json(body, rows_adapter)
            try:
                response = await plane.infer(rows, ticket)
            except NotReady as error:
                return error_response(503, str(error))
        # Already the declared type: serialised straight to JSON, not validated again by FastAPI.
        return Response(response.model_dump_json(), media_type="application/json")

    router.add_api_route(
        service.predict_path,
        predict,
        methods=["POST"],
        response_model=service.response_type,
        summary=service.predict_summary,
        description=f"At most {config.max_batch_size} rows per request.",
        responses={**ERROR_RESPONSES, **(UNAUTHORIZED if protect else {})},
        tags=list(service.tags) or ["prediction"],
        openapi_extra=documented_body(rows_adapter, examples=examples),
        dependencies=list(protect),
    )
    return rows_adapter


def add_health_routes(router: APIRouter, plane: DataPlane) -> None:
    """The original service's health checks, Kubernetes' probes, and `/` to the docs."""
    service, config = plane.service, plane.settings

    @router.get("/", include_in_schema=False)
    async def index(request: Request) -> RedirectResponse:
        return RedirectResponse(request.scope.get("root_path", "") + "/docs")

    @router.get("/health_check", tags=["health"], response_model=health_check_type(service))
    async def health_check() -> Any:
        card = plane.model.card if plane.model else None
        return {
            "health": "OK" if plane.ready else "starting",
            "booted_at": plane.booted_at,
            "version": config.app_revision,
            "aws_region": config.aws_region,
            "k8s_env": config.k8s_env,
            "python_env": config.python_env or config.environment,
            f"{service.name}_model_version": service.model_version(card) if card else None,
            "model": ModelInfo(name=service.name, version=card.version if card else "unloaded"),
            "app_revision": config.app_revision,
            "environment": config.environment,
        }

    @router.get("/health_check/load_balancer", tags=["health"], response_class=Response)
    async def load_balancer_check() -> Response:
        return Response(b"null", media_type="application/json")  # the original's body: JSON null

    @router.get(
        "/livez",
        tags=["probes"],
        summary="The process is alive and its model responds",
        responses={503: {"model": Readiness, "description": "The model's thread has died or hung"}},
    )
    async def livez() -> Any:
        if plane.live:
            return Readiness(status="alive")
        return JSONResponse({"status": "model not responding"}, status_code=503)

    @router.get(
        "/readyz",
        tags=["probes"],
        summary="The model is loaded and warmed up",
        responses={503: {"model": Readiness, "description": "Starting or shutting down"}},
    )
    async def readyz() -> Any:
        state = plane.state
        if state.ready:
            return Readiness(status="ready")
        status = "shutting down" if state.shutting_down else "starting"
        return JSONResponse({"status": status}, status_code=503)


def add_metrics_routes(router: APIRouter, protect: Sequence[Any]) -> None:
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
        return metrics.metrics_response()
