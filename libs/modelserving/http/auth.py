"""Bearer-token auth on REST routes: `BearerAuth.dependency` is a FastAPI security dependency.
The routes that take it are the protected ones, and the OpenAPI document declares the scheme
on exactly those. It runs before a route reads its body. The tokens, and what a request must
send, are `modelserving.runtime.tokens`'.
"""

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from modelserving.runtime.tokens import BearerTokens

SCHEME = "bearerAuth"  # the OpenAPI security scheme's name


class BearerAuth(BearerTokens):
    """The tokens that open the protected routes, as a FastAPI dependency."""

    def dependency(self) -> Any:
        """`dependencies=[auth.dependency()]` on a route: 401 (HTTPException) without a valid token."""
        bearer = HTTPBearer(scheme_name=SCHEME, auto_error=False)

        async def require_token(
            request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
        ) -> None:
            if credentials is not None and self.allows(credentials.credentials):
                return
            message = self.refusal(request.headers.get("authorization"))
            raise HTTPException(401, message, headers={"www-authenticate": "Bearer"})

        return Depends(require_token)


UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or invalid bearer token"}}
