"""The offline docs pages: every URL they load is the service's own, and each one answers."""

import re
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from modelserving.http.docs import ASSETS_URL, install_offline_docs

CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
# Python's mimetypes gives either name for JavaScript, depending on version and /etc/mime.types.
JAVASCRIPT_TYPES = ("text/javascript", "application/javascript")


class Echo(BaseModel):
    text: str


def make_app() -> FastAPI:
    app = FastAPI(title="Docs test", docs_url=None, redoc_url=None)

    @app.post("/echo")
    def echo(body: Echo) -> Echo:
        return body

    install_offline_docs(app)
    return app


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(make_app()) as started:
        yield started


class _LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href", "spec-url") and value]


def linked_urls(html: str) -> list[str]:
    """Every URL the page loads: src/href/spec-url attributes and Swagger UI's `url:` option."""
    collector = _LinkCollector()
    collector.feed(html)
    return collector.urls + re.findall(r"\burl: '([^']*)'", html)


def asset_urls(client: TestClient) -> list[str]:
    return sorted(
        {url for page in ("/docs", "/redoc") for url in linked_urls(client.get(page).text) if "static" in url}
    )


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_pages_load_nothing_but_the_services_own_urls(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "://" not in response.text, "an absolute URL (a CDN's) is left in the page"
    urls = linked_urls(response.text)
    assert len(urls) >= 3, urls  # the script, the icon and the OpenAPI document at least
    assert all(url == "/openapi.json" or url.startswith(f"{ASSETS_URL}/") for url in urls), urls


def test_swagger_ui_page_loads_its_script_style_and_icon(client: TestClient) -> None:
    assert {url.rsplit("/", 1)[1] for url in linked_urls(client.get("/docs").text)} == {
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "favicon.png",
        "openapi.json",
    }


def test_every_asset_is_served_with_its_content_type(client: TestClient) -> None:
    urls = asset_urls(client)
    assert len(urls) == 4, urls  # Swagger UI's script and style, ReDoc's script, the icon
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        content_type = response.headers["content-type"].split(";")[0]
        suffix = url[url.rindex(".") :]
        expected = JAVASCRIPT_TYPES if suffix == ".js" else (CONTENT_TYPES[suffix],)
        assert content_type in expected, (url, content_type)
        assert len(response.content) > 1000, url


def test_scripts_are_the_real_bundles(client: TestClient) -> None:
    assert b"SwaggerUIBundle" in client.get(f"{ASSETS_URL}/swagger-ui-bundle.js").content
    assert b"Redoc" in client.get(f"{ASSETS_URL}/redoc.standalone.js").content


def test_openapi_link_of_the_docs_page_works(client: TestClient) -> None:
    (openapi_url,) = re.findall(r"\burl: '([^']*)'", client.get("/docs").text)
    response = client.get(openapi_url)
    assert response.status_code == 200
    assert "/echo" in response.json()["paths"]


def test_oauth2_redirect_page_is_served(client: TestClient) -> None:
    docs = client.get("/docs").text
    assert "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'" in docs
    response = client.get("/docs/oauth2-redirect")
    assert response.status_code == 200
    assert "swaggerUIRedirectOauth2" in response.text
    assert "://" not in response.text


def test_redoc_page_may_load_images_from_the_service_only(client: TestClient) -> None:
    """ReDoc's sidebar shows Redocly's logo from their CDN unless the page forbids it."""
    policy = client.get("/redoc").headers["content-security-policy"]
    sources = {
        directive.split()[0]: directive.split()[1:] for directive in policy.split(";") if directive.strip()
    }
    assert sources["img-src"] and set(sources["img-src"]) <= {"'self'", "data:"}, policy


def test_unknown_asset_is_404(client: TestClient) -> None:
    assert client.get(f"{ASSETS_URL}/missing.js").status_code == 404
    assert client.get(f"{ASSETS_URL}/../core.py").status_code == 404


def test_urls_follow_a_proxys_path_prefix() -> None:
    with TestClient(make_app(), root_path="/titanic") as client:
        urls = linked_urls(client.get("/docs").text)
        assert urls and all(url.startswith("/titanic/") for url in urls), urls
        assert all(client.get(url).status_code == 200 for url in urls), urls


def test_docs_pages_are_not_in_the_openapi_document(client: TestClient) -> None:
    assert set(client.get("/openapi.json").json()["paths"]) == {"/echo"}


@pytest.mark.parametrize(
    ("app", "message"),
    [
        (FastAPI(), "docs_url=None, redoc_url=None"),
        (FastAPI(docs_url=None), "docs_url=None, redoc_url=None"),
        (FastAPI(docs_url=None, redoc_url=None, openapi_url=None), "no OpenAPI document"),
    ],
)
def test_refuses_an_app_that_would_not_use_the_offline_pages(app: FastAPI, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        install_offline_docs(app)
