"""`GRPCInferenceService`'s six RPCs over one data plane's `ProtocolModel`, and the handler
around each: admission (for an inference, before its message is parsed), auth, request id,
deadline, status codes, metrics and the access line.

The RPCs answer what the REST routes answer, and refuse alike: a `ProtocolError`'s code
becomes the call's status code, its message the status's details. As on REST, the model
RPCs (ModelReady, ModelMetadata, ModelInfer) need the bearer token, here in the
`authorization` metadata, when auth is on; an `x-request-id` metadata entry is taken as the
request id (else one is made) and sent back in the trailing metadata. Requests are parsed
inside the handler, not by gRPC, so a message that is not the RPC's type is INVALID_ARGUMENT
rather than gRPC's INTERNAL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc  # type: ignore[import]
from google.protobuf.message import DecodeError, Message
from inference_grpc import grpc_predict_v2_pb2 as pb  # pants: no-infer-dep (compiled in the build)

from modelserving.grpc.conversions import infer_response, inference_request, model_version, tensor_metadata
from modelserving.protocol.errors import ErrorCode, ProtocolError
from modelserving.protocol.model import ProtocolModel
from modelserving.runtime.admission import RETRY_AFTER_SECONDS, Refused, Ticket
from modelserving.runtime.dataplane import DataPlane
from modelserving.runtime.logs import ACCESS_LOGGER, request_id, valid_request_id
from modelserving.runtime.metrics import Metrics
from modelserving.runtime.payloads import V2_GRPC
from modelserving.runtime.tokens import BearerTokens
from modelserving.runtime.tracing import Tracing

SERVICE = "inference.GRPCInferenceService"
# Each protocol error's status code, and each refusal's.
STATUS_CODES = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: grpc.StatusCode.INVALID_ARGUMENT,
}
REFUSAL_CODES = {503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED}
# gRPC's Retry-After: a client with a retry policy waits this long before trying again.
RETRY_PUSHBACK = ("grpc-retry-pushback-ms", str(RETRY_AFTER_SECONDS * 1000))

log = logging.getLogger("modelserving")
access_log = logging.getLogger(ACCESS_LOGGER)
Handler = Callable[..., Awaitable[Message]]


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
            inference_request(request, self.protocol.codec.max_rows), version, ticket, V2_GRPC
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
    metrics: Metrics,
    auth: BearerTokens | None,
    plane: DataPlane | None = None,
    tracing: Tracing | None = None,
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
        if tracing is not None:
            tracing.tag_request()
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
                code = STATUS_CODES[error.code]
                await context.abort(code, error.message)
            except Refused as refusal:
                code = REFUSAL_CODES[refusal.status]
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
