"""JSON request bodies parsed in one pass, for the routes that carry the data (typed and v2).

FastAPI would `json.loads` a body into Python objects and then validate them;
pydantic-core validates straight from the bytes, about twice as fast, which is
most of what a large batch costs before the model sees it. Errors are FastAPI's
own `RequestValidationError`, located under "body", so they get the same 422
(or v2 400) bodies as any other invalid request. Because FastAPI no longer sees
the body, `documented_body` and `schema_components` put it in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException

T = TypeVar("T")
REF_TEMPLATE = "#/components/schemas/{model}"


async def json_body(request: Request) -> bytes:
    """The request body's bytes, unparsed; 415 for a non-JSON content type."""
    media = media_type(request)
    if media is not None and media != "application/json" and not media.endswith("+json"):
        raise HTTPException(415, f"content-type must be application/json, got {media!r}")
    return await request.body()


def media_type(request: Request) -> str | None:
    """The request's media type, lower-case and without parameters; None without a content-type."""
    content_type = request.headers.get("content-type")
    return None if content_type is None else content_type.partition(";")[0].strip().lower()


def validate_json(data: bytes, adapter: TypeAdapter[T]) -> T:
    """JSON `data` validated strictly by `adapter`; 422 naming the field."""
    try:
        # Strict: a number must be a JSON number, a string a JSON string (no `true` or "7.5" as 7.5).
        return adapter.validate_json(data, strict=True)
    except ValidationError as error:
        raise RequestValidationError(
            [{**issue, "loc": ("body", *issue["loc"])} for issue in error.errors(include_url=False)]
        ) from None


def documented_body(adapter: TypeAdapter[Any], **media: Any) -> dict[str, Any]:
    """`openapi_extra` declaring a required JSON body of `adapter`'s type (`media`: e.g. examples)."""
    schema, _ = _schema_and_models(adapter)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema, **media}}}}


def schema_components(*adapters: TypeAdapter[Any]) -> Callable[[dict[str, Any]], None]:
    """A change for `extend_openapi`: the models `adapters` refer to, as OpenAPI components."""

    def add(document: dict[str, Any]) -> None:
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for adapter in adapters:
            components.update(_schema_and_models(adapter)[1])

    return add


def _schema_and_models(adapter: TypeAdapter[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the body's schema, a reference if it is a model; the component schemas it refers to)."""
    schema = adapter.json_schema(ref_template=REF_TEMPLATE)
    models = schema.pop("$defs", {})
    if schema.get("type") == "object" and "title" in schema:
        models[schema["title"]] = schema
        schema = {"$ref": REF_TEMPLATE.format(model=schema["title"])}
    return schema, models
