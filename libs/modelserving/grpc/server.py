"""The Open Inference Protocol over gRPC: `inference.GRPCInferenceService` on GRPC_PORT.

Each worker runs a gRPC server on its own event loop beside the REST API, over the same
data plane, so both share the model, its micro-batches and its readiness. The RPCs answer
what the REST routes of `modelserving.rest.v2` answer (`ProtocolModel`), and refuse alike: a
`ProtocolError`'s HTTP status becomes its gRPC status code (400 INVALID_ARGUMENT, 404
NOT_FOUND, 503 UNAVAILABLE; a missing or wrong token UNAUTHENTICATED), its message the
status's details. As on REST, the model RPCs (ModelReady, ModelMetadata, ModelInfer) need
the bearer token, here in the `authorization` metadata, when auth is on; an `x-request-id`
metadata entry is taken as the request id (else one is made) and sent back in the trailing
metadata; every RPC is counted by method and code and written as an access line.

Requests are parsed inside the handler, not by gRPC, so a message that is not the RPC's
type is INVALID_ARGUMENT rather than gRPC's INTERNAL. Inputs may carry their elements in
`contents` or in `raw_input_contents` (the binary layout of `modelserving.protocol.binary`,
which tritonclient sends); outputs always go back in `raw_output_contents`, as Triton sends
them and tritonclient reads them. A [N, K] output's labels travel as its `labels` parameter,
a JSON list in a string. The standard health service (`grpc.health.v1.Health`) reports
SERVING once the model is ready, for Kubernetes' gRPC probes.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc  # type: ignore[import]
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import]
from inference_grpc import grpc_predict_v2_pb2 as pb  # pants: no-infer-dep (compiled in the build)

from modelserving.http.auth import BearerAuth
from modelserving.http.middleware import valid_request_id
from modelserving.protocol import binary as binary_tensors
from modelserving.rest.v2 import (
    MAX_DIMENSIONS,
    MAX_INPUTS,
    MAX_NAME,
    ProtocolError,
    ProtocolModel,
    TensorMetadata,
)
from modelserving.runtime import metrics
from modelserving.runtime.admission import RETRY_AFTER_SECONDS, Refused, Ticket
from modelserving.runtime.dataplane import DataPlane
from modelserving.runtime.logs import ACCESS_LOGGER, request_id
from modelserving.settings import Settings

SERVICE = "inference.GRPCInferenceService"
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
# gRPC's Retry-After: a client with a retry policy waits this long before trying again.
RETRY_PUSHBACK = ("grpc-retry-pushback-ms", str(RETRY_AFTER_SECONDS * 1000))
# Where InferTensorContents keeps each datatype's elements (FP16 travels only as raw contents).
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

MAX_CONCURRENT_STREAMS = 16
MAX_CONNECTION_AGE_SECONDS = 300
MAX_CONNECTION_AGE_GRACE_SECONDS = 20  # the drain's GRACEFUL_SHUTDOWN_SECONDS, by default
MAX_HEALTH_WATCHES = 16

log = logging.getLogger("modelserving")
access_log = logging.getLogger(ACCESS_LOGGER)
Handler = Callable[..., Awaitable[Message]]


def inference_request(message: pb.ModelInferRequest, max_rows: int) -> Any:
    """The REST form of `message` (an `InferenceRequest`), held to the same limits as a JSON body
    (`modelserving.rest.v2`), checked here directly: most of a one-row call's cost otherwise. Row
    counts and element counts are checked before any element is decoded."""
    raw = message.raw_input_contents
    if not 1 <= len(message.inputs) <= MAX_INPUTS:
        raise ProtocolError(400, f"inputs: a request has 1 to {MAX_INPUTS} inputs, got {len(message.inputs)}")
    if raw and len(raw) != len(message.inputs):
        raise ProtocolError(
            400, f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs"
        )
    inputs = []
    for index, tensor in enumerate(message.inputs):
        name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
        if not 1 <= len(name) <= MAX_NAME:
            raise ProtocolError(400, f"inputs[{index}].name: 1 to {MAX_NAME} characters, got {len(name)}")
        if datatype not in CONTENTS and datatype not in binary_tensors.FIXED:
            raise ProtocolError(400, f"input '{name}': unknown datatype {datatype!r}")
        if not 1 <= len(shape) <= MAX_DIMENSIONS or min(shape) < 0:
            raise ProtocolError(
                400,
                f"input '{name}': shape {shape} must have 1 to {MAX_DIMENSIONS} dimensions, none negative",
            )
        if shape[0] > max_rows:
            raise ProtocolError(
                400, f"input '{name}': {shape[0]} rows exceed the limit of {max_rows} rows per request"
            )
        count = math.prod(shape)
        try:
            if raw:
                data = binary_tensors.decode(name, datatype, count, raw[index])
            elif datatype not in CONTENTS:
                raise ProtocolError(400, f"input '{name}': {datatype} elements travel in raw_input_contents")
            else:
                elements = getattr(tensor.contents, CONTENTS[datatype])
                if len(elements) != count:
                    raise ProtocolError(
                        400,
                        f"input '{name}': shape {shape} needs {count} elements, data has {len(elements)}",
                    )
                data = [element.decode() for element in elements] if datatype == "BYTES" else list(elements)
        except binary_tensors.BinaryDataError as error:
            raise ProtocolError(400, str(error)) from None
        except UnicodeDecodeError:
            raise ProtocolError(400, f"input '{name}': a BYTES element is not UTF-8 text") from None
        inputs.append({"name": name, "shape": shape, "datatype": datatype, "data": data})
    request: dict[str, Any] = {"inputs": inputs}
    if message.id:
        if len(message.id) > MAX_NAME:
            raise ProtocolError(400, f"id: at most {MAX_NAME} characters, got {len(message.id)}")
        request["id"] = message.id
    if message.outputs:
        if not all(1 <= len(output.name) <= MAX_NAME for output in message.outputs):
            raise ProtocolError(400, f"outputs: each name has 1 to {MAX_NAME} characters")
        request["outputs"] = [{"name": output.name} for output in message.outputs]
    return request


def infer_response(body: dict[str, Any]) -> pb.ModelInferResponse:
    """`ProtocolModel.infer`'s body as the RPC's response, every output's elements raw."""
    response = pb.ModelInferResponse(
        model_name=body["model_name"], model_version=body["model_version"], id=body["id"]
    )
    for output in body["outputs"]:
        tensor = response.outputs.add(name=output["name"], datatype=output["datatype"], shape=output["shape"])
        for key, value in (output.get("parameters") or {}).items():
            tensor.parameters[key].string_param = json.dumps(value)
        response.raw_output_contents.append(binary_tensors.encode(output["datatype"], output["data"]))
    return response


def tensor_metadata(tensors: list[TensorMetadata]) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    message = pb.ModelMetadataResponse.TensorMetadata
    return [message(name=item.name, datatype=item.datatype, shape=item.shape) for item in tensors]


def model_version(requested: str) -> str | None:
    return requested or None  # the protocol's empty version: whichever is loaded


class InferenceServicer:
    """The six RPCs of `GRPCInferenceService` over one data plane's `ProtocolModel`."""

    def __init__(self, protocol: ProtocolModel) -> None:
        self.protocol = protocol

    async def server_live(self, request: pb.ServerLiveRequest) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.protocol.plane.live)

    async def server_ready(self, request: pb.ServerReadyRequest) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.protocol.plane.state.ready)

    async def server_metadata(self, request: pb.ServerMetadataRequest) -> pb.ServerMetadataResponse:
        metadata = self.protocol.server_metadata()
        return pb.ServerMetadataResponse(
            name=metadata.name, version=metadata.version, extensions=metadata.extensions
        )

    async def model_ready(self, request: pb.ModelReadyRequest) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.protocol.ready(request.name, model_version(request.version)))

    async def model_metadata(self, request: pb.ModelMetadataRequest) -> pb.ModelMetadataResponse:
        metadata = self.protocol.metadata(request.name, model_version(request.version))
        return pb.ModelMetadataResponse(
            name=metadata.name,
            versions=metadata.versions,
            platform=metadata.platform,
            inputs=tensor_metadata(metadata.inputs),
            outputs=tensor_metadata(metadata.outputs),
        )

    async def model_infer(self, request: pb.ModelInferRequest, ticket: Ticket) -> pb.ModelInferResponse:
        version = self.protocol.loaded_version(request.model_name, model_version(request.model_version))
        body = await self.protocol.infer(
            inference_request(request, self.protocol.codec.max_rows), version, ticket
        )
        return infer_response(body)

    def methods(self) -> dict[str, tuple[type[Message], Handler, bool]]:
        """Each RPC's name: (its request type, its handler, whether it needs the token). A handler
        that takes a `ticket` is an inference: admitted (`DataPlane.admit`) before it is parsed."""
        return {
            "ServerLive": (pb.ServerLiveRequest, self.server_live, False),
            "ServerReady": (pb.ServerReadyRequest, self.server_ready, False),
            "ServerMetadata": (pb.ServerMetadataRequest, self.server_metadata, False),
            "ModelReady": (pb.ModelReadyRequest, self.model_ready, True),
            "ModelMetadata": (pb.ModelMetadataRequest, self.model_metadata, True),
            "ModelInfer": (pb.ModelInferRequest, self.model_infer, True),
        }


def rpc_handler(
    method: str,
    request_type: type[Message],
    handler: Handler,
    auth: BearerAuth | None,
    plane: DataPlane | None = None,
) -> Any:
    """A unary method handler for `handler`: admission (with `plane`, for an inference), auth,
    request id, deadline, parsing, status codes, metrics and the access line around it."""

    async def refuse(refusal: Refused, context: Any) -> bytes:
        """A refusal at admission, at the least cost: counted, never access-logged (under
        overload there are thousands a second; `DataPlane` logs a line per spell)."""
        metrics.observe_rpc(SERVICE, method, grpc.StatusCode.UNAVAILABLE.name, 0.0)
        context.set_trailing_metadata((RETRY_PUSHBACK,))
        await context.abort(grpc.StatusCode.UNAVAILABLE, refusal.message)
        raise AssertionError("abort raises")

    async def answer(data: bytes, context: Any) -> bytes:
        if plane is not None and (refusal := plane.refusal()) is not None:
            return await refuse(refusal, context)
        metadata = dict(context.invocation_metadata() or ())
        rid = valid_request_id(metadata.get("x-request-id", ""))
        token = request_id.set(rid)
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        ticket = None
        trailers: tuple[tuple[str, str], ...] = (("x-request-id", rid),)
        try:
            # In the trailers, sent with the status: initial metadata of its own is one more
            # operation per call, a third of a trivial call's cost.
            context.set_trailing_metadata(trailers)
            if auth is not None and not auth.allows_header(metadata.get("authorization")):
                code = grpc.StatusCode.UNAUTHENTICATED
                await context.abort(code, auth.refusal(metadata.get("authorization")))
            try:
                if plane is not None:
                    ticket = plane.admit()
                    remaining = context.time_remaining()
                    if remaining is not None:
                        ticket.limit_to(ticket.admitted_at + remaining)
                request = request_type.FromString(data)
                response = await (handler(request) if ticket is None else handler(request, ticket))
            except DecodeError:
                code = grpc.StatusCode.INVALID_ARGUMENT
                await context.abort(code, f"the request is not a {request_type.DESCRIPTOR.full_name} message")
            except ProtocolError as error:
                code = STATUS_CODES.get(error.status, grpc.StatusCode.INVALID_ARGUMENT)
                await context.abort(code, error.message)
            except Refused as refusal:
                code = STATUS_CODES[refusal.status]
                if refusal.status == 503:
                    context.set_trailing_metadata((*trailers, RETRY_PUSHBACK))
                await context.abort(code, refusal.message)
            return response.SerializeToString()  # type: ignore[no-any-return]
        except asyncio.CancelledError:  # the caller cancelled, or its deadline passed: gRPC ends the call
            if ticket is not None:
                ticket.abandon()
            remaining = context.time_remaining()
            expired = remaining is not None and remaining <= 0
            code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            raise
        except Exception as error:
            if code is grpc.StatusCode.OK:  # not an abort of ours: a fault of the server's
                code = grpc.StatusCode.INTERNAL
                log.error("unexpected error in %s", method, exc_info=error)
                await context.abort(code, "internal error")
            raise
        finally:
            if ticket is not None:
                plane.release(ticket)  # type: ignore[union-attr]
            elapsed = time.perf_counter() - started
            metrics.observe_rpc(SERVICE, method, code.name, elapsed)
            access_log.info(
                "rpc",
                extra={
                    "method": f"{SERVICE}/{method}",
                    "status": code.name,
                    "duration_ms": round(elapsed * 1000, 3),
                    "client": context.peer(),
                    "request_id": rid,
                },
            )
            request_id.reset(token)

    return grpc.unary_unary_rpc_method_handler(answer)


class GrpcServer:
    """One worker's gRPC server: the inference service and the health service on GRPC_PORT."""

    def __init__(self, plane: DataPlane, settings: Settings, tokens: tuple[bytes, ...]) -> None:
        assert settings.grpc_port is not None, "only made when GRPC_PORT is set"
        self.settings = settings
        auth = BearerAuth(tokens) if tokens else None
        servicer = InferenceServicer(ProtocolModel(plane))
        self.handlers = {
            method: rpc_handler(
                method,
                request_type,
                handler,
                auth if protected else None,
                plane if "ticket" in inspect.signature(handler).parameters else None,
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
            options=server_options(self.settings), maximum_concurrent_rpcs=self.settings.max_connections
        )
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, self.handlers),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.server.add_insecure_port(self.address)
        await self.server.start()

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
