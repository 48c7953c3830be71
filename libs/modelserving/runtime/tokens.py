"""Bearer tokens for the prediction routes (typed and v2, REST and gRPC) and, if asked, /metrics.

It fails closed: the tokens come from `AUTH_TOKEN_FILE` (one token per line, e.g. a
mounted Kubernetes Secret) and/or `AUTH_TOKEN`, and a process with none refuses to start
unless `ALLOW_UNAUTHENTICATED=true` says to serve without them (`./pants run` and the dev
overlay set it; an environment named prod or production refuses even so). A protected route needs
`Authorization: Bearer <token>`, compared with every configured token in constant
time (`hmac.compare_digest`); anything else gets 401 with `WWW-Authenticate:
Bearer`, in the error format of the route's own API (gRPC: UNAUTHENTICATED; REST's
dependency is `modelserving.http.auth.BearerAuth`). Probes, health checks and the docs stay
open, so kubelets and load balancers need no token. Tokens are read once, at start-up; rotating them is a
rolling restart.
"""

import hmac
from dataclasses import dataclass
from pathlib import Path

from modelserving.settings import Settings

MIN_TOKEN_LENGTH = 16
# A process in one of these environments refuses to start without tokens, whatever the
# manifests say (they mount the tokens in prod too).
AUTHENTICATED_ENVIRONMENTS = frozenset({"prod", "production"})


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
    """The tokens `settings` configure (none: auth off, as ALLOW_UNAUTHENTICATED allows); TokenError
    if they are unusable, or if there are none and serving without them was not allowed."""
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    tokens = read_tokens(settings.auth_token_file, token)
    if not tokens and settings.environment.lower() in AUTHENTICATED_ENVIRONMENTS:
        raise TokenError(
            f"ENVIRONMENT={settings.environment} needs AUTH_TOKEN_FILE or AUTH_TOKEN: "
            "it never serves without authentication"
        )
    if not tokens and not settings.allow_unauthenticated:
        raise TokenError(
            "no AUTH_TOKEN_FILE or AUTH_TOKEN: give the tokens clients must send, or set "
            "ALLOW_UNAUTHENTICATED=true to serve without authentication (local runs and dev only)"
        )
    return tokens


@dataclass(frozen=True)
class BearerTokens:
    """The tokens that open the protected routes and RPCs."""

    tokens: tuple[bytes, ...]

    def allows(self, offered: str) -> bool:
        candidate = offered.strip().encode()
        # Every token is compared, so the time taken says nothing about which one nearly matched.
        matches = [hmac.compare_digest(candidate, token) for token in self.tokens]
        return any(matches)

    def allows_header(self, authorization: str | None) -> bool:
        """Whether an `Authorization` value (a header, or gRPC metadata) carries a valid bearer token."""
        scheme, _, credentials = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and self.allows(credentials)

    @staticmethod
    def refusal(authorization: str | None) -> str:
        """Why a request with this `Authorization` value (or none) is refused."""
        return "missing bearer token" if authorization is None else "a valid bearer token is required"
