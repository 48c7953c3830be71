"""One JSON error body for every 4xx and 5xx, never a stack trace.

Open Inference Protocol routes (/v2/...) answer with that protocol's own
`{"error": "..."}` body instead, and invalid v2 requests are 400s.

    {"error": "body[0].Pclass: Input should be 1, 2 or 3", "status": 422,
     "request_id": "...", "fields": [{"field": "body[0].Pclass", "message": "...", "type": "literal_error"}]}
"""

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from modelserving.logs import request_id

log = logging.getLogger("modelserving.errors")


class FieldError(BaseModel):
    field: str = Field(examples=["body[0].Pclass"])
    message: str = Field(examples=["Input should be 1, 2 or 3"])
    type: str = Field(examples=["literal_error"])


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str = Field(examples=["body[0].Pclass: Input should be 1, 2 or 3"])
    status: int = Field(examples=[422])
    request_id: str = Field(examples=["4bf92f3577b34da6a3ce929d0e0e4736"])
    fields: list[FieldError] = Field(default_factory=list)


def error_response(status: int, message: str, fields: Sequence[FieldError] = ()) -> JSONResponse:
    body = ErrorBody(error=message, status=status, request_id=request_id.get(), fields=list(fields))
    return JSONResponse(body.model_dump(), status_code=status)


def field_path(location: Sequence[Any]) -> str:
    """("body", 0, "Pclass") -> "body[0].Pclass"."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


PROTOCOL_PREFIX = "/v2"


def protocol_error_response(status: int, message: str) -> JSONResponse:
    """The Open Inference Protocol's error body: `{"error": message}`."""
    return JSONResponse({"error": message}, status_code=status)


def _is_protocol_route(request: Request) -> bool:
    path = request.url.path
    return path == PROTOCOL_PREFIX or path.startswith(f"{PROTOCOL_PREFIX}/")


def _validation_failed(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    fields = [
        FieldError(field=field_path(issue["loc"]), message=issue["msg"], type=issue["type"])
        for issue in error.errors()
    ]
    summary = "; ".join(f"{item.field}: {item.message}" for item in fields[:5])
    if len(fields) > 5:
        summary += f"; and {len(fields) - 5} more"
    if _is_protocol_route(request):
        return protocol_error_response(400, summary or "invalid request")
    return error_response(422, summary or "invalid request", fields)


def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    if _is_protocol_route(request):
        response = protocol_error_response(error.status_code, str(error.detail))
    else:
        response = error_response(error.status_code, str(error.detail))
    response.headers.update(error.headers or {})
    return response


def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled error")
    return error_response(500, "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        413: "Request body over the size limit",
        422: "Invalid request; `fields` names each invalid field",
        503: "Model not loaded yet",
    }.items()
}
