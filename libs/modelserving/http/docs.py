"""Swagger UI and ReDoc pages whose JavaScript, CSS and icon the service serves itself.

FastAPI's built-in `/docs` and `/redoc` pages load their assets from a public CDN, so they are
blank in an air-gapped cluster or behind a deny-all egress policy. `install_offline_docs` serves
the same pages, built with FastAPI's own HTML generators, from the assets that the
`fastapi-offline` distribution packages (Swagger UI 5 and ReDoc 2, the major versions FastAPI
itself loads), mounted under `/docs/static`. `extend_openapi` adds to the OpenAPI document what
FastAPI cannot infer from the routes (a body a route parses itself, a security scheme).
"""

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs/static"

SWAGGER_UI_JS = "swagger-ui-bundle.js"
SWAGGER_UI_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"
ASSET_FILES = (SWAGGER_UI_JS, SWAGGER_UI_CSS, REDOC_JS, FAVICON)

# ReDoc's sidebar always shows Redocly's logo from Redocly's CDN (and hides it when it fails to
# load): the browser is told to load images from this service only, so the page never asks.
REDOC_CONTENT_SECURITY_POLICY = "img-src 'self' data:"


def packaged_assets_dir() -> Path:
    """The installed directory holding the docs assets; fails if any is missing."""
    directory = files(fastapi_offline) / "static"
    if not isinstance(directory, Path):
        raise RuntimeError("fastapi-offline must be installed as files, not zipped, to serve its assets")
    missing = [name for name in ASSET_FILES if not (directory / name).is_file()]
    if missing:
        raise RuntimeError(f"fastapi-offline no longer ships {', '.join(missing)} in {directory}")
    return directory


def install_offline_docs(app: FastAPI) -> None:
    """Serve Swagger UI at /docs (with its OAuth2 redirect page) and ReDoc at /redoc, without a CDN.

    The app must be created with `docs_url=None, redoc_url=None`, so that FastAPI's CDN pages do
    not take those paths first.
    """
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError(
            "create the app with FastAPI(docs_url=None, redoc_url=None): "
            "FastAPI's own docs pages load their assets from a CDN"
        )
    if app.openapi_url is None:
        raise ValueError("the app has no OpenAPI document (openapi_url=None) for the docs to show")
    openapi_url: str = app.openapi_url
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url

    app.mount(ASSETS_URL, StaticFiles(directory=packaged_assets_dir()), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root_path = _root_path(request)
        return get_swagger_ui_html(
            openapi_url=root_path + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root_path}{ASSETS_URL}/{SWAGGER_UI_JS}",
            swagger_css_url=f"{root_path}{ASSETS_URL}/{SWAGGER_UI_CSS}",
            swagger_favicon_url=f"{root_path}{ASSETS_URL}/{FAVICON}",
            oauth2_redirect_url=root_path + oauth2_redirect_url if oauth2_redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            # No spec validation against swagger.io's online validator, whatever the app asks for.
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )

    async def redoc(request: Request) -> HTMLResponse:
        root_path = _root_path(request)
        page = get_redoc_html(
            openapi_url=root_path + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root_path}{ASSETS_URL}/{REDOC_JS}",
            redoc_favicon_url=f"{root_path}{ASSETS_URL}/{FAVICON}",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = REDOC_CONTENT_SECURITY_POLICY
        return page

    async def swagger_ui_oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)
    if oauth2_redirect_url:
        app.add_route(oauth2_redirect_url, swagger_ui_oauth2_redirect, include_in_schema=False)


def _root_path(request: Request) -> str:
    """The path prefix a proxy mounts the app under, as FastAPI's own docs pages use it."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def extend_openapi(app: FastAPI, *changes: Callable[[dict[str, Any]], None]) -> None:
    """Apply `changes` to the OpenAPI document FastAPI generates, once, when it is first asked for."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            for change in changes:
                change(document)
        return app.openapi_schema  # type: ignore[return-value]  # set by generate()

    app.openapi = openapi  # type: ignore[method-assign]
