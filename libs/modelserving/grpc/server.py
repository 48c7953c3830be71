"""The Open Inference Protocol over gRPC: one worker's `grpc.aio` server on GRPC_PORT, with
`inference.GRPCInferenceService` (`servicer.py`) and the standard health service.

Each worker runs it on its own event loop beside the REST API, over the same data plane, so
both share the model, its micro-batches and its readiness (`modelserving.server` starts and
stops it). The health service (`grpc.health.v1.Health`) reports SERVING once the model is
ready, for Kubernetes' gRPC probes.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import grpc  # type: ignore[import]
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import]

from modelserving.grpc.servicer import SERVICE, InferenceServicer, rpc_handler
from modelserving.protocol.model import ProtocolModel
from modelserving.runtime.dataplane import DataPlane
from modelserving.runtime.tokens import BearerTokens
from modelserving.settings import Settings

MAX_CONCURRENT_STREAMS = 16
MAX_CONNECTION_AGE_SECONDS = 300
MAX_CONNECTION_AGE_GRACE_SECONDS = 20  # the drain's GRACEFUL_SHUTDOWN_SECONDS, by default
MAX_HEALTH_WATCHES = 16


class GrpcServer:
    """One worker's gRPC server: the inference service and the health service on GRPC_PORT."""

    def __init__(self, plane: DataPlane, settings: Settings, tokens: tuple[bytes, ...]) -> None:
        assert settings.grpc_port is not None, "only made when GRPC_PORT is set"
        self.settings = settings
        self.tracing = plane.tracing
        auth = BearerTokens(tokens) if tokens else None
        servicer = InferenceServicer(ProtocolModel(plane))
        self.handlers = {
            method: rpc_handler(
                method,
                request_type,
                handler,
                plane.metrics,
                auth if protected else None,
                plane if "ticket" in inspect.signature(handler).parameters else None,
                plane.tracing,
            )
            for method, (request_type, handler, protected) in servicer.methods().items()
        }
        host = settings.host
        self.address = f"[{host}]:{settings.grpc_port}" if ":" in host else f"{host}:{settings.grpc_port}"
        self.health: HealthService | None = None
        self.server: Any = None
        self._serving = False
        self._health_update: asyncio.Future[None] | None = None
        plane.on_health_change(self._model_health_changed)

    async def start(self) -> None:
        """Listen, reporting NOT_SERVING until `serving()`. (A gRPC server belongs to the event
        loop it is made on: the worker's, which runs this.)"""
        self.health = HealthService(MAX_HEALTH_WATCHES)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.server = grpc.aio.server(
            options=server_options(self.settings),
            maximum_concurrent_rpcs=self.settings.max_connections,
            interceptors=self._interceptors(),
        )
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, self.handlers),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.server.add_insecure_port(self.address)
        await self.server.start()

    def _interceptors(self) -> list[Any]:
        """OpenTelemetry's gRPC instrumentation, with tracing on: each call a server span, under
        the `traceparent` in its metadata."""
        if self.tracing is None:
            return []
        from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

        untraced = filters.negate(filters.health_check())  # probes
        interceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
            tracer_provider=self.tracing.provider, filter_=untraced
        )
        return [interceptor]

    async def serving(self) -> None:
        self._serving = True
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float) -> None:
        """NOT_SERVING and no new calls at once; calls under way get `grace` seconds to finish.
        Health watches end first, so they hold nothing up."""
        assert self.health is not None, "started"
        await self.health.shut_down()
        await self.server.stop(grace)

    def _model_health_changed(self, live: bool) -> None:
        """The model stopped (or resumed) responding: so does the health service (Kubernetes' probes)."""
        if self._serving:
            status = (
                health_pb2.HealthCheckResponse.SERVING if live else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            self._health_update = asyncio.ensure_future(self._set_health(status))

    async def _set_health(self, status: Any) -> None:
        assert self.health is not None, "started"
        for name in ("", SERVICE):  # the server as a whole, and the inference service
            await self.health.set(name, status)


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """The gRPC server's channel arguments: its bounds, and how long a connection lives."""
    return [
        ("grpc.max_receive_message_length", settings.max_body_bytes),
        # Every worker listens on the port (the kernel spreads connections among them);
        # one worker alone does not, so a port already taken stops it.
        ("grpc.so_reuseport", int(settings.workers > 1)),
        # Streams one connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS):
        # past it, a client's calls wait in the client, under their own deadlines. grpcio takes
        # every call it receives on as a task before any handler (and so admission) sees it;
        # a worker keeps busy on 16 calls from one connection, and more would only wait inside
        # it, holding memory, where they cannot be refused cheaply.
        ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
        # A connection lives MAX_CONNECTION_AGE, then is told to go (GOAWAY) and given the grace
        # to finish its calls: clients of a long-lived channel reconnect, and so spread over
        # the pods a Service adds, instead of sticking to one.
        ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_SECONDS * 1000),
        ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_SECONDS * 1000),
    ]


class HealthService(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """The standard health service (`grpc.health.v1.Health`, from its generated stubs), with at
    most `max_watches` Watch streams open at once: a stream is held for as long as its client
    likes and needs no token, so past the bound Watch gets RESOURCE_EXHAUSTED. `shut_down()`
    reports NOT_SERVING for good and ends every Watch once it has said so, so that open
    watches hold no shutdown up."""

    def __init__(self, max_watches: int) -> None:
        self.max_watches = max_watches
        self._statuses: dict[str, int] = {}
        self._changed = asyncio.Condition()
        self._watches = 0
        self._shutting_down = False

    async def set(self, service: str, status: int) -> None:
        if self._shutting_down:
            return
        async with self._changed:
            self._statuses[service] = status
            self._changed.notify_all()

    async def shut_down(self) -> None:
        async with self._changed:
            self._shutting_down = True
            for service in self._statuses:
                self._statuses[service] = health_pb2.HealthCheckResponse.NOT_SERVING
            self._changed.notify_all()

    async def Check(self, request: Any, context: Any) -> Any:
        status = self._statuses.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: Any, context: Any) -> None:
        if self._watches >= self.max_watches:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"at most {self.max_watches} health watches at once"
            )
        self._watches += 1
        try:
            sent = None
            async with self._changed:
                while True:
                    status = self._statuses.get(
                        request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
                    )
                    if status != sent:
                        await context.write(health_pb2.HealthCheckResponse(status=status))
                        sent = status
                    if self._shutting_down:
                        return  # the stream ends OK, having said NOT_SERVING
                    await self._changed.wait()
        finally:
            self._watches -= 1
