"""Bearer-token auth on REST routes: `BearerAuth.dependency` is a FastAPI security dependency.
The routes that take it are the protected ones, and the OpenAPI document declares the scheme
on exactly those; routes FastAPI does not run (`DirectRoute`) call `authorise` themselves.
Either runs before a route reads its body. The tokens, and what a request must send, are
`modelserving.runtime.tokens`'.
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
            request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
        ) -> None:
            self.authorise(request)

        return Depends(require_token)

    def authorise(self, request: Request) -> None:
        """401 (HTTPException) unless the request carries a valid bearer token: the dependency's
        check, for routes that run their own (`modelserving.http.routing.DirectRoute`)."""
        header = request.headers.get("authorization")
        if self.allows_header(header):
            return
        raise HTTPException(401, self.refusal(header), headers={"www-authenticate": "Bearer"})


UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or invalid bearer token"}}
