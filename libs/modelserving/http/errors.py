"""One JSON error body for every 4xx and 5xx, never a stack trace.

An API with its own error format formats its routes' errors itself (the Open
Inference Protocol's routes: `v2.ProtocolRoute`); everything else answers with:

    {"error": "body[0].Pclass: Input should be 1, 2 or 3", "status": 422,
     "request_id": "...", "fields": [{"field": "body[0].Pclass", "message": "...", "type": "literal_error"}]}
"""

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from modelserving.protocol.errors import field_path
from modelserving.runtime.admission import RETRY_AFTER_SECONDS, Refused
from modelserving.runtime.logs import request_id

log = logging.getLogger("modelserving.http.errors")
CLIENT_CLOSED_REQUEST = 499


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


def validation_failures(error: RequestValidationError) -> tuple[str, list[FieldError]]:
    """A one-line summary of what is invalid (the first five fields), and every field at fault."""
    fields = [
        FieldError(field=field_path(issue["loc"]), message=issue["msg"], type=issue["type"])
        for issue in error.errors()
    ]
    summary = "; ".join(f"{item.field}: {item.message}" for item in fields[:5])
    if len(fields) > 5:
        summary += f"; and {len(fields) - 5} more"
    return summary or "invalid request", fields


def _validation_failed(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return error_response(422, *validation_failures(error))


def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    response = error_response(error.status_code, str(error.detail))
    response.headers.update(error.headers or {})
    return response


def retry_after(refusal: Refused) -> dict[str, str]:
    """The headers of a refusal's response: when to try again, for a 503."""
    return {"retry-after": str(RETRY_AFTER_SECONDS)} if refusal.status == 503 else {}


def _refused(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, Refused)
    response = error_response(error.status, error.message)
    response.headers.update(retry_after(error))
    return response


def _client_left(request: Request, error: Exception) -> Response:
    """The client closed its connection before its request was read: nobody to answer. 499 is
    the status access logs record for it (nginx's "client closed request")."""
    return Response(status_code=CLIENT_CLOSED_REQUEST)


def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled error")
    return error_response(500, "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(ClientDisconnect, _client_left)
    app.add_exception_handler(Exception, _unexpected)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Invalid X-Request-Timeout-Ms header",
        413: "Request body over the size limit",
        422: "Invalid request; `fields` names each invalid field",
        503: "Model not loaded yet, the worker at its limit of requests in flight (retry after "
        "`Retry-After` seconds), or the model not responding",
        504: "The request's deadline (X-Request-Timeout-Ms, or the server's longest wait) passed "
        "before the model took it; it was not predicted",
    }.items()
}
