"""One worker's app: the data plane, with REST over it and gRPC beside it when GRPC_PORT is set.

`create_app` makes the worker's `DataPlane`, the REST app over it (`modelserving.rest`) and,
if asked for, the gRPC server (`modelserving.grpc`), and ties their lives together in the
app's lifespan: gRPC listens (NOT_SERVING) while the model loads, both serve once it is
ready, and at SIGTERM both drain against one deadline. The lifespan also hands the HTTP
protocol (`uvicorn_protocol.py`) its header deadline and the admission gate.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from modelserving.http.admission import AdmissionGate
from modelserving.http.scope import ADMISSION_GATE_STATE, HEADER_TIMEOUT_STATE
from modelserving.rest.app import rest_app
from modelserving.runtime.dataplane import DataPlane
from modelserving.runtime.metrics import Metrics
from modelserving.runtime.process import on_termination, set_up_worker
from modelserving.runtime.tokens import configured_tokens
from modelserving.service import ModelService
from modelserving.settings import Settings, load_settings


def create_app(
    service: ModelService[Any, Any], settings: Settings | None = None, metrics: Metrics | None = None
) -> FastAPI:
    """The worker's FastAPI app for `service` (settings from the environment unless given; its
    metrics in a registry of their own unless given one)."""
    config = settings or load_settings()
    set_up_worker(config)
    plane = DataPlane(service, config, metrics)
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
            yield {  # to the server's connections (uvicorn_protocol.py)
                HEADER_TIMEOUT_STATE: config.header_timeout_seconds,
                ADMISSION_GATE_STATE: AdmissionGate(plane, service.predict_path, config.root_path),
            }
        terminate()
        if "grpc" in drain:
            await drain["grpc"]
        await plane.stop(max(0.0, drain["deadline"] - time.monotonic()))

    return rest_app(plane, tokens, lifespan)
