"""Hostile requests against a real Titanic server process: each gets a 4xx JSON error, and the worker lives.

Not the ASGI app in-process: uvicorn's own parsing, limits, timeouts and error
paths are part of what is tested. Every error body is checked for leaks (stack traces,
file paths, library versions).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from modelserving.testing import running_server
from titanic.main import SERVICE

TYPED = "/predict_survival_by_passengers"
V2 = "/v2/models/titanic/infer"
JSON = {"content-type": "application/json"}
PASSENGER = SERVICE.examples[0].model_dump(mode="json")
GOOD = json.dumps([PASSENGER]).encode()
V2_GOOD = json.dumps(
    {"inputs": [{"name": "Pclass", "shape": [1], "datatype": "INT64", "data": [3]}]}
).encode()
LEAKS = re.compile(r"Traceback|File \"|site-packages|/usr/|/tmp/|\.py\b|pydantic|starlette|uvicorn|fastapi")


def passenger_with(raw_field: str, raw_value: str) -> bytes:
    """One passenger whose `raw_field` is the raw JSON text `raw_value` (not valid JSON, maybe)."""
    body = json.dumps([{**PASSENGER, raw_field: "@@"}])
    return body.replace('"@@"', raw_value).encode()


def v2_with(raw_value: str) -> bytes:
    body = json.dumps({"inputs": [{"name": "Pclass", "shape": [1], "datatype": "INT64", "data": ["@@"]}]})
    return body.replace('"@@"', raw_value).encode()


HEADER_TIMEOUT = 3.0
BODY_TIMEOUT = 3.0
DEEP = b"[" * 100_000 + b"]" * 100_000
CASES: dict[str, tuple[str, dict[str, str], bytes]] = {
    "malformed JSON": (TYPED, JSON, b'[{"PassengerId": 1,'),
    "wrong content type": (TYPED, {"content-type": "text/plain"}, GOOD),
    "form content type": (TYPED, {"content-type": "application/x-www-form-urlencoded"}, b"a=1&b=2"),
    "NaN": (TYPED, JSON, passenger_with("Age", "NaN")),
    "Infinity": (TYPED, JSON, passenger_with("Fare", "Infinity")),
    "1e400": (TYPED, JSON, passenger_with("Fare", "1e400")),
    "10^100 integer": (TYPED, JSON, passenger_with("PassengerId", "1" + "0" * 100)),
    "5000-digit integer": (TYPED, JSON, passenger_with("SibSp", "9" * 5000)),
    "500 kB string field": (TYPED, JSON, passenger_with("Name", json.dumps("x" * 500_000))),
    "list over the batch limit": (TYPED, JSON, json.dumps([PASSENGER] * 1001).encode()),
    "JSON nested 100 000 deep": (TYPED, JSON, DEEP),
    "invalid UTF-8": (TYPED, JSON, b'[{"Name": "\xff\xfe\xfd"}]'),
    "empty body": (TYPED, JSON, b""),
    "object instead of list": (TYPED, JSON, json.dumps(PASSENGER).encode()),
    "v2 malformed JSON": (V2, JSON, b'{"inputs": [{'),
    "v2 wrong content type": (V2, {"content-type": "text/plain"}, V2_GOOD),
    "v2 NaN": (V2, JSON, v2_with("NaN")),
    "v2 1e400": (V2, JSON, v2_with("1e400")),
    "v2 10^100 integer": (V2, JSON, v2_with("1" + "0" * 100)),
    "v2 5000-digit integer": (V2, JSON, v2_with("9" * 5000)),
    "v2 JSON nested 100 000 deep": (V2, JSON, DEEP),
    "v2 invalid UTF-8": (V2, JSON, b'{"inputs": "\xff\xfe"}'),
    "v2 empty body": (V2, JSON, b""),
    "v2 shape of 10^18 elements": (V2, JSON, V2_GOOD.replace(b"[1]", b"[1000000000000000000]", 1)),
    "v2 data nested 100 000 deep": (V2, JSON, v2_with(DEEP.decode())),
}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_server(
        "titanic.main",
        LOG_LEVEL="WARNING",
        HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
    ) as (process, url):
        yield url
        assert process.poll() is None, "the server died"


def assert_clean_error(response: httpx.Response, path: str) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    body = response.json()
    assert isinstance(body["error"], str) and body["error"], body
    if not path.startswith("/v2"):
        assert body["status"] == response.status_code
        assert body["request_id"] == response.headers["x-request-id"]
    assert not LEAKS.search(response.text), response.text[:500]


def assert_still_serving(url: str) -> None:
    response = httpx.post(url + TYPED, content=GOOD, headers=JSON, timeout=10)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_body_gets_a_clean_4xx_and_the_worker_keeps_serving(
    server: str, case: str, record_property: Callable[[str, object], None]
) -> None:
    path, headers, body = CASES[case]
    response = httpx.post(server + path, content=body, headers=headers, timeout=30)
    record_property("status", response.status_code)
    assert_clean_error(response, path)
    assert_still_serving(server)


@pytest.mark.parametrize("path", [TYPED, V2])
def test_10_mb_string_field_is_413(
    server: str, path: str, record_property: Callable[[str, object], None]
) -> None:
    body = passenger_with("Name", json.dumps("x" * 10_000_000))
    response = httpx.post(server + path, content=body, headers=JSON, timeout=30)
    record_property("status", response.status_code)
    assert response.status_code == 413
    assert_clean_error(response, path)
    assert_still_serving(server)


def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(server: str) -> None:
    """413 comes back while the client has sent nothing but headers: the server did not wait to read it."""
    port = int(server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            f"POST {TYPED} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: {50 * 1024 * 1024}\r\n\r\n".encode()
        )
        head = connection.recv(65536).decode("latin-1")
    assert head.startswith("HTTP/1.1 413"), head
    assert_still_serving(server)


def test_a_client_sending_headers_a_byte_a_second_is_disconnected_while_others_are_served(
    server: str, record_property: Callable[[str, object], None]
) -> None:
    port = int(server.rsplit(":", 1)[1])
    request = f"POST {TYPED} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n".encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
        closed_after = None
        for byte in request:
            try:
                slow.sendall(bytes([byte]))
                slow.settimeout(1.0)
                if slow.recv(1) == b"":  # the server closed the connection
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                assert_still_serving(server)  # others are served while this client dawdles
            except OSError:
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None, "the server waited for the whole slow request"
    record_property("closed_after_s", round(closed_after, 1))
    assert HEADER_TIMEOUT - 0.5 <= closed_after <= HEADER_TIMEOUT + 3, closed_after
    assert_still_serving(server)


def trickle_body(url: str, **headers: str) -> tuple[bytes, float]:
    """Send a POST's headers, then its declared body a byte every 0.2 s: what came back, and
    the seconds until the server closed the connection."""
    port = int(url.rsplit(":", 1)[1])
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head = (
        f"POST {TYPED} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{extra}"
        f"content-length: {len(GOOD)}\r\n\r\n"
    ).encode()
    received = b""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
        slow.sendall(head)
        slow.settimeout(0.2)
        for byte in GOOD:
            try:
                slow.sendall(bytes([byte]))
                chunk = slow.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if chunk == b"":
                break
            received += chunk
        else:
            pytest.fail(f"the server read the whole trickled body; it answered {received[:200]!r}")
    return received, time.monotonic() - started


def test_a_client_trickling_its_body_gets_408_and_is_disconnected(
    server: str, record_property: Callable[[str, object], None]
) -> None:
    received, closed_after = trickle_body(server)
    record_property("closed_after_s", round(closed_after, 1))
    assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert BODY_TIMEOUT - 0.5 <= closed_after <= BODY_TIMEOUT + 3, closed_after
    assert_still_serving(server)


def test_a_refused_client_trickling_its_body_is_disconnected_at_once() -> None:
    """A 401 is sent before the body is read; the connection then closes rather than wait for it."""
    with running_server("titanic.main", LOG_LEVEL="WARNING", AUTH_TOKEN="a-token-of-enough-length") as (
        _,
        url,
    ):
        received, closed_after = trickle_body(url)
    assert received.startswith(b"HTTP/1.1 401"), received[:200]
    assert closed_after < 2, closed_after
