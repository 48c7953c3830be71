"""REST traffic that gives the dashboard's panels something to draw: predictions, requests the
service refuses as invalid (422), and bursts of large concurrent requests that a worker held to a
few requests at once (MAX_CONCURRENT_REQUESTS) refuses for overload (503). (Over gRPC, the test
calls with tritonclient and the screenshot script with the benchmark's messages: the two compile
the same protocol's messages, which cannot both be loaded in one process.)
"""

from __future__ import annotations

import collections
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from modelserving import ModelService


def post(url: str, body: Any, token: str | None = None) -> int:
    """POST `body` as JSON to `url`: the status."""
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.read()
        return error.code


def rest(
    service: ModelService[Any, Any], url: str, requests: int, token: str | None = None
) -> collections.Counter[int]:
    """`requests` predictions of the service's examples on its typed route, then as many invalid
    bodies (a row that is not an object): statuses counted."""
    rows = [example.model_dump(mode="json") for example in service.examples]
    statuses = collections.Counter(post(url + service.predict_path, rows, token) for _ in range(requests))
    statuses.update(post(url + service.predict_path, ["not a row"], token) for _ in range(requests))
    return statuses


def burst(
    service: ModelService[Any, Any], url: str, concurrency: int, rows: int = 1000, token: str | None = None
) -> collections.Counter[int]:
    """`concurrency` requests of `rows` rows each at once on the typed route: statuses counted
    (503 for those refused for overload)."""
    examples = [example.model_dump(mode="json") for example in service.examples]
    body = (examples * (rows // len(examples) + 1))[:rows]
    with ThreadPoolExecutor(concurrency) as pool:
        statuses = pool.map(lambda _: post(url + service.predict_path, body, token), range(concurrency))
        return collections.Counter(statuses)
