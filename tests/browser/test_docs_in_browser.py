"""The real Titanic server's docs pages in headless Chromium, with the network cut off at loopback.

A person opens /docs, sees every operation, tries the prediction route with its example and gets
predictions; nothing the page loads may come from outside the machine (as in an air-gapped
cluster). The same through the gateway: nginx routing what the staging overlay's Ingress declares,
the page at http://<its host>/titanic/docs (the host resolving to loopback in this browser only).
Chromium is Debian's (./pants test installs it: 3rdparty/system/tools.txt), driven by
Playwright without Playwright's own browser download. A screenshot of /docs is written under
Pants' `extra-output/` (copied to dist/test/), $TEST_OUTPUT_DIR or dist/test-output/.
"""

import ipaddress
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn
from fastapi import FastAPI
from gateway.nginx import ingress_routes, running_gateway
from k8s.overlays import render
from playwright.sync_api import Browser, BrowserContext, Page, Request, Route, expect, sync_playwright

from modelserving.dev.testing import free_port, running_server

CHROMIUM = Path("/usr/bin/chromium")
PREDICT_PATH = "/predict_survival_by_passengers"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
IN_PAGE_SCHEMES = {"data", "blob", "about"}
UI_TIMEOUT_MS = 30_000
# Pants copies what a test writes here (in its sandbox) to dist/test/<the test's address>/.
PANTS_EXTRA_OUTPUT = "extra-output"

expect.set_options(timeout=UI_TIMEOUT_MS)


GATEWAY_OVERLAY = ("titanic", "staging")  # the service and environment whose Ingress is routed


@pytest.fixture(scope="module")
def gateway_routes() -> list[Any]:
    return ingress_routes(render(*GATEWAY_OVERLAY))


@pytest.fixture(scope="module", params=["direct", "through the gateway"])
def titanic_url(
    request: pytest.FixtureRequest, gateway_routes: list[Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Where a person opens the docs: the server itself, or the gateway's host and prefix."""
    prefix = f"/{GATEWAY_OVERLAY[0]}"
    (host,) = {route.host for route in gateway_routes}
    with running_server("titanic.main", LOG_LEVEL="warning", ROOT_PATH=prefix) as (_, url):
        if request.param == "direct":
            yield url
            return
        backends = {route: url.removeprefix("http://") for route in gateway_routes}
        with running_gateway(tmp_path_factory.mktemp("nginx"), backends) as gateway:
            yield f"http://{host}:{gateway.rpartition(':')[2]}{prefix}"


def chromium_flags(gateway_hosts: list[str]) -> list[str]:
    unreachable_proxy = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # Second line of defence behind the route interception below: no host name resolves but
        # 127.0.0.1, and any other address goes to a dead proxy (Chromium never proxies loopback).
        # The gateway's host name, and only it, resolves to loopback.
        "--host-resolver-rules="
        + "".join(f"MAP {host} 127.0.0.1 , " for host in gateway_hosts)
        + "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--proxy-server={unreachable_proxy}",
        "--proxy-bypass-list=" + ";".join(gateway_hosts),
    ]


@pytest.fixture(scope="module")
def browser(gateway_routes: list[Any]) -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: ./pants test installs it (3rdparty/system/tools.txt)")
    hosts = sorted({route.host for route in gateway_routes})
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=chromium_flags(hosts))
        yield launched
        launched.close()


def leaves_loopback(url: str, local_hosts: frozenset[str] = frozenset()) -> bool:
    parts = urlsplit(url)
    if parts.scheme in IN_PAGE_SCHEMES or parts.hostname in local_hosts:
        return False
    try:
        return not ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:  # a host name, not an address
        return True


class LoopbackOnlyContext:
    """A browser context that aborts, and records, every request for a non-loopback URL.

    Requests the page's own Content-Security-Policy stops in the browser never reach the network,
    so they do not count as leaving (Playwright still reports them, as failed with "csp").
    """

    def __init__(self, browser: Browser, local_hosts: frozenset[str] = frozenset()) -> None:
        self.local_hosts = local_hosts  # names that resolve to loopback in this browser
        self.context: BrowserContext = browser.new_context(
            viewport={"width": 1280, "height": 1600}, service_workers="block"
        )
        self.context.set_default_timeout(UI_TIMEOUT_MS)
        self.requested: list[str] = []
        self.escaped: list[str] = []
        self.stopped_by_page_policy: set[str] = set()
        self.context.on("request", lambda request: self.requested.append(request.url))
        self.context.on("requestfailed", self._record_policy_stop)
        self.context.route("**/*", self._loopback_only)

    def _loopback_only(self, route: Route) -> None:
        if leaves_loopback(route.request.url, self.local_hosts):
            self.escaped.append(route.request.url)
            route.abort("blockedbyclient")
        else:
            route.continue_()

    def _record_policy_stop(self, request: Request) -> None:
        if request.failure == "csp":
            self.stopped_by_page_policy.add(request.url)

    def requests_that_left_loopback(self) -> list[str]:
        reported = {url for url in self.requested if leaves_loopback(url, self.local_hosts)}
        reported -= self.stopped_by_page_policy
        return sorted(set(self.escaped) | reported)


@pytest.fixture
def guarded(browser: Browser, gateway_routes: list[Any]) -> Iterator[LoopbackOnlyContext]:
    guarded_context = LoopbackOnlyContext(browser, frozenset(route.host for route in gateway_routes))
    yield guarded_context
    guarded_context.context.close()


def screenshot_path(name: str) -> Path:
    """$TEST_OUTPUT_DIR if set; under Pants its sandbox's extra-output/; else dist/test-output/."""
    if os.environ.get("TEST_OUTPUT_DIR"):
        directory = Path(os.environ["TEST_OUTPUT_DIR"])
    elif Path(PANTS_EXTRA_OUTPUT).is_dir():
        directory = Path(PANTS_EXTRA_OUTPUT)
    else:
        directory = Path("dist/test-output")
    directory.mkdir(parents=True, exist_ok=True)
    return (directory / name).resolve()


def report_screenshot(path: Path) -> None:
    kept = (
        " (Pants copies it to dist/test/<this test's address>/)"
        if path.parent.name == PANTS_EXTRA_OUTPUT
        else ""
    )
    print(f"screenshot: {path}{kept}")


def operations_in_openapi(page: Page, base_url: str) -> set[tuple[str, str]]:
    """The operations of the OpenAPI document, fetched as the page does (its host may be the gateway's)."""
    paths = page.evaluate("url => fetch(url).then(response => response.json())", f"{base_url}/openapi.json")[
        "paths"
    ]
    return {
        (method.upper(), path) for path, item in paths.items() for method in item if method in HTTP_METHODS
    }


def operations_on_page(page: Page) -> list[tuple[str, str]]:
    listed: list[list[str]] = page.locator(".opblock").evaluate_all(
        """blocks => blocks.map(block => [
            block.querySelector('.opblock-summary-method').textContent.trim(),
            block.querySelector('.opblock-summary-path').getAttribute('data-path'),
        ])"""
    )
    return [(method, path) for method, path in listed]


def test_swagger_ui_lists_every_operation_and_runs_a_prediction(
    titanic_url: str, guarded: LoopbackOnlyContext
) -> None:
    page = guarded.context.new_page()
    through_gateway = urlsplit(titanic_url).path != ""
    screenshot = screenshot_path(f"titanic-docs{'-gateway' if through_gateway else ''}.png")
    try:
        page.goto(f"{titanic_url}/docs")
        assert guarded.requests_that_left_loopback() == [], "/docs loads assets from outside the machine"
        expect(page.locator(".opblock").first).to_be_visible()

        expected = operations_in_openapi(page, titanic_url)
        listed = operations_on_page(page)
        assert sorted(listed) == sorted(expected), "Swagger UI does not list exactly the OpenAPI operations"

        predict = page.locator(".opblock-post").filter(
            has=page.locator(f'.opblock-summary-path[data-path="{PREDICT_PATH}"]')
        )
        predict.locator(".opblock-summary").click()
        predict.get_by_role("button", name="Try it out").click()
        expect(predict.locator("textarea.body-param__text")).to_have_value(
            # The request body is pre-filled with the service's example rows.
            re.compile(r'"PassengerId": 1,[\s\S]*"PassengerId": 2,')
        )
        predict.get_by_role("button", name="Execute").click()

        live_response = predict.locator(".live-responses-table .response").first
        expect(live_response.locator(".response-col_status")).to_have_text("200")
        expect(live_response.locator(".response-col_description")).to_contain_text('"predictions"')
        expect(live_response.locator(".response-col_description")).to_contain_text('"survived"')
    finally:
        page.screenshot(path=screenshot, full_page=True)
        report_screenshot(screenshot)
    page.wait_for_load_state("networkidle")
    assert guarded.requests_that_left_loopback() == []
    assert any(url.endswith("/docs/static/swagger-ui-bundle.js") for url in guarded.requested)


def test_redoc_renders_the_prediction_route_offline(titanic_url: str, guarded: LoopbackOnlyContext) -> None:
    page = guarded.context.new_page()
    page.goto(f"{titanic_url}/redoc")
    assert guarded.requests_that_left_loopback() == [], "/redoc loads assets from outside the machine"
    heading = page.get_by_role("heading", name=re.compile("Predict survival for a list of passengers"))
    expect(heading).to_be_visible()
    # The sidebar's "API docs by Redocly" footer comes with Redocly's logo, from Redocly's CDN.
    expect(page.get_by_text("API docs by Redocly")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert guarded.requests_that_left_loopback() == []


@pytest.fixture
def app_with_fastapis_cdn_docs() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(FastAPI(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the CDN-docs app did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_the_guard_catches_fastapis_cdn_docs(
    app_with_fastapis_cdn_docs: str, guarded: LoopbackOnlyContext
) -> None:
    """FastAPI's default /docs reaches for its CDN: the guard must see it, and block it."""
    page = guarded.context.new_page()
    page.goto(f"{app_with_fastapis_cdn_docs}/docs")
    page.wait_for_load_state("load")
    escaped_hosts = {urlsplit(url).hostname for url in guarded.requests_that_left_loopback()}
    assert escaped_hosts, "a CDN request went unnoticed"
    assert page.locator(".opblock").count() == 0, "the CDN was reachable"
