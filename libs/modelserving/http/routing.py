"""`DirectRoute`: a route FastAPI documents but does not run, for the inference routes.

FastAPI runs a route by solving its dependencies, reading its parameters and validating
what it returns; for a route whose endpoint takes the `Request` and returns a `Response`
itself, that work is all overhead, and on a one-row request it cost more than the model.
A `DirectRoute`'s endpoint is called with the request and nothing else. FastAPI still
documents the route from its declaration (`openapi_extra`, `response_model`, and its
`dependencies`, such as the bearer-token scheme); the endpoint does at run time what they
say: it reads and validates its own body (`bodies.py`) and checks its own token
(`BearerAuth.authorise`). `APIRoute.get_route_handler` is FastAPI's documented place to
change how a route is run.
"""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class DirectRoute(APIRoute):
    """A route whose endpoint is `async (request) -> Response`, called as it is."""

    def get_route_handler(self) -> Handler:
        endpoint: Handler = self.endpoint
        return endpoint
