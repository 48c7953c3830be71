"""The Open Inference Protocol's (v2) REST routes, as KServe, Seldon MLServer and Triton clients
call them:

    GET  /v2                                  server metadata
    GET  /v2/health/live, /v2/health/ready    server health
    GET  /v2/models/{name}[/versions/{v}]     model metadata: inputs and outputs
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer

Every service gets them from its `ModelService` alone; the answers are `ProtocolModel`'s
(`modelserving.protocol`), and the routes only carry them over HTTP. Their errors are the
protocol's `{"error": "..."}` (`ProtocolRoute`); the model routes take the service's auth
dependency, if any. Tensors may also travel as binary data after the JSON
(`modelserving.protocol.binary`). The infer routes are `DirectRoute`s: they read their own body
and check their own token.
"""

from collections.abc import Callable, Coroutine, Sequence
from enum import Enum
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException
from starlette.routing import Match

from modelserving.http.admission import admitted
from modelserving.http.auth import UNAUTHORIZED, BearerAuth
from modelserving.http.bodies import documented_body, json_body, media_type, schema_components, validate_json
from modelserving.http.docs import extend_openapi
from modelserving.http.errors import retry_after, validation_failures
from modelserving.http.routing import DirectRoute
from modelserving.protocol import binary
from modelserving.protocol.codec import V2Codec
from modelserving.protocol.errors import ErrorCode, ProtocolError, invalid
from modelserving.protocol.model import ProtocolModel
from modelserving.protocol.types import (
    BINARY_INFERENCE_REQUEST,
    INFERENCE_REQUEST,
    InferenceRequest,
    InferenceResponse,
    LiveResponse,
    ModelMetadata,
    ReadyResponse,
    ServerMetadata,
)
from modelserving.runtime.admission import Refused
from modelserving.runtime.dataplane import DataPlane
from modelserving.runtime.payloads import V2_REST

# Each protocol error's HTTP status.
HTTP_STATUS = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
}
_JSON: TypeAdapter[Any] = TypeAdapter(Any)  # serialises plain values in pydantic-core
# What a binary request may declare itself as (tritonclient sends none).
_BINARY_MEDIA_TYPES = {"application/octet-stream", "application/json"}
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def protocol_error_response(status: int, message: str) -> JSONResponse:
    """The Open Inference Protocol's error body: `{"error": message}`."""
    return JSONResponse({"error": message}, status_code=status)


class ProtocolRoute(APIRoute):
    """A v2 route: whatever it refuses answers in the protocol's own error body, and invalid
    requests are 400s (the protocol has no 422)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_in_protocol_terms(request: Request) -> Response:
            try:
                return await handle(request)
            except ProtocolError as error:
                return protocol_error_response(HTTP_STATUS[error.code], error.message)
            except Refused as refusal:
                response = protocol_error_response(refusal.status, refusal.message)
                response.headers.update(retry_after(refusal))
                return response
            except RequestValidationError as error:
                summary, _ = validation_failures(error)
                return protocol_error_response(400, summary)
            except HTTPException as error:
                response = protocol_error_response(error.status_code, str(error.detail))
                response.headers.update(error.headers or {})
                return response

        return handle_in_protocol_terms


class DirectProtocolRoute(ProtocolRoute, DirectRoute):
    """A v2 route FastAPI documents but does not run (`DirectRoute`), in the protocol's terms."""


async def binary_body(request: Request) -> bytes:
    """The body of a request of the binary tensor data extension, unparsed; 415 for a content
    type it may not have."""
    media = media_type(request)
    if media is not None and media not in _BINARY_MEDIA_TYPES:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"a binary request's content-type must be application/octet-stream, got {media!r}",
        )
    return await request.body()


def binary_request(body: bytes, header_length: str, codec: V2Codec) -> InferenceRequest:
    """A request of the binary tensor data extension, each input given its `data` (rows counted first)."""
    try:
        header, data = binary.split(body, header_length)
        inference: Any = validate_json(header, BINARY_INFERENCE_REQUEST)
        codec.check_row_counts(inference["inputs"])
        binary.attach_inputs(inference["inputs"], data)
    except binary.BinaryDataError as error:
        raise invalid(str(error)) from None
    return inference  # type: ignore[no-any-return]


def _documented_infer(path: str, model_name: str, example: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI parameters, body and example of an infer route that parses its own request."""
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "title": title}}
        for name, title in (("model_name", "Model Name"), ("model_version", "Model Version"))
        if f"{{{name}}}" in path
    ]
    parameters[0]["example"] = model_name
    return {"parameters": parameters, **documented_body(INFERENCE_REQUEST, example=example)}


def add_v2_routes(app: FastAPI, plane: DataPlane, auth: BearerAuth | None = None) -> None:
    """The protocol's routes over `plane` on `app`; the model routes behind `auth`, if given."""
    service = plane.service
    protocol = ProtocolModel(plane)
    codec = protocol.codec
    tags: list[str | Enum] = ["open inference protocol (v2)"]
    first_route = len(app.router.routes)

    def add_route(
        path: str,
        endpoint: Callable[..., Any],
        methods: Sequence[str],
        route_class: type[ProtocolRoute] = ProtocolRoute,
        **options: Any,
    ) -> None:
        """A route of the protocol, on the app itself (see create_app)."""
        app.router.add_api_route(
            path, endpoint, methods=list(methods), route_class_override=route_class, tags=tags, **options
        )

    errors: dict[int | str, dict[str, Any]] = {
        status: {"description": description, "content": {"application/json": {"example": {"error": "..."}}}}
        for status, description in {400: "Invalid request", 404: "Unknown model or version"}.items()
    }
    ModelName = Annotated[str, Path(examples=[service.name])]

    def readiness_of(model_name: str, model_version: str | None) -> Any:
        if protocol.ready(model_name, model_version):
            return ReadyResponse(ready=True)
        return JSONResponse(ReadyResponse(ready=False).model_dump(), status_code=503)

    async def infer(request: Request) -> Response:
        # The route reads its own path parameters and body (documented by _documented_infer): one
        # pydantic-core pass from bytes to InferenceRequest, without FastAPI's per-parameter work,
        # which cost more than the protocol's own conversion on a one-row request.
        if auth:
            auth.authorise(request)
        parameters = request.path_params
        version = protocol.loaded_version(parameters["model_name"], parameters.get("model_version"))
        header_length = request.headers.get(binary.HEADER)
        raw = await (json_body(request) if header_length is None else binary_body(request))
        with admitted(request, plane) as ticket:  # before parsing: a refusal costs little
            if header_length is None:
                inference = validate_json(raw, INFERENCE_REQUEST)
            else:
                inference = binary_request(raw, header_length, codec)
            body = await protocol.infer(inference, version, ticket, V2_REST)
        outputs = body["outputs"]
        if inference.get("parameters") or inference.get("outputs"):
            binary_outputs = binary.binary_outputs(
                inference.get("parameters"), inference.get("outputs"), (output["name"] for output in outputs)
            )
            if binary_outputs:
                data = binary.encode_outputs(outputs, binary_outputs)
                header = _JSON.dump_json(body)
                return Response(
                    header + data,
                    media_type="application/octet-stream",
                    headers={binary.HEADER: str(len(header))},
                )
        # An InferenceResponse made of the typed response's validated values, serialised once
        # (tests validate these bodies against InferenceResponse).
        return Response(_JSON.dump_json(body), media_type="application/json")

    # Two route shapes, each with exactly its own parameters: the loaded version, or a named one.
    def model_metadata(model_name: ModelName) -> ModelMetadata:
        return protocol.metadata(model_name, None)

    def model_version_metadata(model_name: ModelName, model_version: str) -> ModelMetadata:
        return protocol.metadata(model_name, model_version)

    def model_ready(model_name: ModelName) -> Any:
        return readiness_of(model_name, None)

    def model_version_ready(model_name: ModelName, model_version: str) -> Any:
        return readiness_of(model_name, model_version)

    # Optional protocol fields are left out rather than sent as null.
    options: dict[str, Any] = {
        "responses": {**errors, **(UNAUTHORIZED if auth else {})},
        "response_model_exclude_none": True,
        "dependencies": [auth.dependency()] if auth else [],  # the infer routes check it themselves
    }
    shapes: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = [
        ("/v2/models/{model_name}", model_metadata, model_ready),
        ("/v2/models/{model_name}/versions/{model_version}", model_version_metadata, model_version_ready),
    ]
    # Infer first: routes are matched in order, and it is the one under load.
    for base, _, _ in shapes:
        add_route(
            f"{base}/infer",
            infer,
            methods=["POST"],
            route_class=DirectProtocolRoute,
            response_model=InferenceResponse,
            openapi_extra=_documented_infer(base, service.name, codec.example_request()),
            **options,
        )
    for base, metadata, ready in shapes:
        add_route(base, metadata, ["GET"], **options)
        add_route(f"{base}/ready", ready, ["GET"], **options)
    extend_openapi(app, schema_components(INFERENCE_REQUEST))

    def server_metadata() -> ServerMetadata:
        return protocol.server_metadata()

    def server_live() -> Any:
        if plane.live:
            return LiveResponse(live=True)
        return JSONResponse(LiveResponse(live=False).model_dump(), status_code=503)

    def server_ready() -> Any:
        if plane.state.ready:
            return ReadyResponse(ready=True)
        return JSONResponse(ReadyResponse(ready=False).model_dump(), status_code=503)

    add_route("/v2", server_metadata, ["GET"])
    add_route("/v2/health/live", server_live, ["GET"], responses={503: {"model": LiveResponse}})
    add_route("/v2/health/ready", server_ready, ["GET"], responses={503: {"model": ReadyResponse}})
    known_routes = app.router.routes[first_route:]

    def unknown_route(request: Request) -> Response:
        allowed = sorted(
            method
            for route in known_routes
            if isinstance(route, APIRoute) and route.matches(request.scope)[0] == Match.PARTIAL
            for method in route.methods or ()
        )
        if allowed:
            response = protocol_error_response(405, f"method {request.method} not allowed")
            response.headers["allow"] = ", ".join(allowed)
            return response
        raise ProtocolError(ErrorCode.NOT_FOUND, f"no route {request.url.path}")

    # Last: any other /v2 path, so that it too answers in the protocol's terms.
    add_route("/v2/{path:path}", unknown_route, _METHODS, include_in_schema=False)
