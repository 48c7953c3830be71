"""Health routes: the original service's health checks (with a service's own keys, `HealthKeys`),
Kubernetes' probes, and `/` to the docs."""

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, Field, create_model

from modelserving.runtime.dataplane import DataPlane
from modelserving.service import ModelService


class ModelInfo(BaseModel):
    name: str = Field(examples=["titanic"])
    version: str = Field(examples=["1.0.0"])


def health_check_type(service: ModelService[Any, Any]) -> type[BaseModel]:
    """`GET /health_check`'s body: `health` and `booted_at`, the service's own keys if it declares
    any (`HealthKeys`), then the model, revision and environment."""
    fields: dict[str, Any] = dict(
        health=(str, Field(examples=["OK"], description='"OK" once the model is ready, else "starting".')),
        booted_at=(datetime, ...),
        **(service.health_keys.fields if service.health_keys else {}),
        model=(ModelInfo, ...),
        app_revision=(str, Field(examples=["3f2c1e0"])),
        environment=(str, Field(examples=["dev"])),
    )
    health_check: type[BaseModel] = create_model("HealthCheck", **fields)
    return health_check


class Readiness(BaseModel):
    status: str = Field(examples=["ready"])


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
            **(service.health_keys.values(config, card) if service.health_keys else {}),
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
