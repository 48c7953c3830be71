"""Optional bearer-token auth for the prediction routes (typed and v2) and, if asked, /metrics.

Off unless a token is configured: `AUTH_TOKEN_FILE` (one token per line, e.g.
a mounted Kubernetes Secret) and/or `AUTH_TOKEN`. A request to a protected
path must then carry `Authorization: Bearer <token>`, compared with every
configured token in constant time (`hmac.compare_digest`); anything else gets
401 with `WWW-Authenticate: Bearer`. Probes, health checks and the docs stay
open, so kubelets and load balancers need no token. Tokens are read once, at
start-up; rotating them is a rolling restart.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from modelserving.docs import extend_openapi
from modelserving.errors import PROTOCOL_PREFIX, error_response, protocol_error_response
from modelserving.settings import Settings

MIN_TOKEN_LENGTH = 16
SCHEME = "bearerAuth"  # the OpenAPI security scheme's name


class TokenError(ValueError):
    """The configured tokens are unusable; the message is one line."""


def read_tokens(token_file: Path | None, token: str | None) -> tuple[bytes, ...]:
    """Every configured token; TokenError if a source is set but unusable."""
    tokens: list[str] = []
    if token_file is not None:
        try:
            text = token_file.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise TokenError(f"AUTH_TOKEN_FILE={str(token_file)!r}: {error.__class__.__name__}") from None
        from_file = [line.strip() for line in text.splitlines() if line.strip()]
        if not from_file:
            raise TokenError(f"AUTH_TOKEN_FILE={str(token_file)!r} holds no token")
        tokens += from_file
    if token is not None:
        tokens.append(token.strip())
    for candidate in tokens:
        if len(candidate) < MIN_TOKEN_LENGTH or not candidate.isascii() or not candidate.isprintable():
            raise TokenError(f"auth tokens must be at least {MIN_TOKEN_LENGTH} printable ASCII characters")
    return tuple(candidate.encode() for candidate in tokens)


def configured_tokens(settings: Settings) -> tuple[bytes, ...]:
    """The tokens `settings` configure (none: auth off); TokenError if they are unusable."""
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    return read_tokens(settings.auth_token_file, token)


@dataclass(frozen=True)
class BearerAuth:
    """Which paths need a token, and the tokens that open them."""

    tokens: tuple[bytes, ...]
    exact_paths: frozenset[str]
    path_prefixes: tuple[str, ...]

    def protects(self, path: str) -> bool:
        return path in self.exact_paths or path.startswith(self.path_prefixes)

    def allows(self, authorization: bytes | None) -> bool:
        scheme, _, offered = (authorization or b"").partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        offered = offered.strip()
        # Every token is compared, so the time taken says nothing about which one nearly matched.
        matches = [hmac.compare_digest(offered, token) for token in self.tokens]
        return any(matches)


class BearerAuthMiddleware:
    """Answers 401 to a protected path without a valid bearer token, before the app reads the body."""

    def __init__(self, app: ASGIApp, auth: BearerAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.auth.protects(scope["path"]):
            await self.app(scope, receive, send)
            return
        authorization = next((value for name, value in scope["headers"] if name == b"authorization"), None)
        if self.auth.allows(authorization):
            await self.app(scope, receive, send)
            return
        message = "a valid bearer token is required" if authorization else "missing bearer token"
        if scope["path"].startswith(f"{PROTOCOL_PREFIX}/"):
            response = protocol_error_response(401, message)
        else:
            response = error_response(401, message)
        response.headers["www-authenticate"] = "Bearer"
        await response(scope, receive, send)


def install_bearer_auth(app: FastAPI, auth: BearerAuth) -> None:
    """Enforce `auth` and declare it in the OpenAPI document (the docs' Authorize button)."""
    app.add_middleware(BearerAuthMiddleware, auth=auth)  # type: ignore  # mypy 1.1 vs Starlette's ParamSpec
    extend_openapi(app, lambda document: _declare(document, auth))


def _declare(document: dict[str, Any], auth: BearerAuth) -> None:
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[SCHEME] = {"type": "http", "scheme": "bearer"}
    for path, operations in document["paths"].items():
        if auth.protects(path):
            for operation in operations.values():
                operation["security"] = [{SCHEME: []}]
                operation.setdefault("responses", {})["401"] = {
                    "description": "Missing or invalid bearer token"
                }


def protected_paths(predict_path: str, metrics: bool) -> tuple[frozenset[str], tuple[str, ...]]:
    """(exact paths, path prefixes) a token guards: the typed route, every v2 model route, maybe /metrics."""
    exact: Sequence[str] = (predict_path, "/metrics") if metrics else (predict_path,)
    return frozenset(exact), (f"{PROTOCOL_PREFIX}/models/",)
