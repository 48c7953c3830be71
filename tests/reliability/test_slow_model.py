"""A slow model never starves its worker: while every predict call computes for 300 ms holding
the GIL (`slow_model.py`), 16 clients keep it busy, and probes still answer within 50 ms (p99),
every request is answered, and batches grow with load. The same under the project's `serve`
and under plain uvicorn, which knows nothing of this project.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from modelserving.testing import predict_calls, running_server
from titanic.main import SERVICE

PROBE_P99_MS = 50
CLIENTS = 16
LOADED_SECONDS = 8
SERVERS = {
    "serve": ("reliability.slow_model",),
    "plain uvicorn": ("uvicorn", "reliability.slow_model:create_app", "--factory", "--log-level", "warning"),
}
PASSENGER = [SERVICE.examples[0].model_dump()]


def post_until(url: str, stop: threading.Event) -> list[int]:
    """Predict requests one after another until `stop`: their status codes (0: no response)."""
    statuses = []
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            try:
                statuses.append(client.post(SERVICE.predict_path, json=PASSENGER).status_code)
            except httpx.TransportError:
                statuses.append(0)
    return statuses


def probe_until(url: str, stop: threading.Event) -> dict[str, list[float]]:
    """/livez and /readyz in turn, every 20 ms until `stop`: each one's latencies in ms."""
    latencies: dict[str, list[float]] = {"/livez": [], "/readyz": []}
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            for path, taken in latencies.items():
                started = time.perf_counter()
                assert client.get(path).status_code == 200, path
                taken.append((time.perf_counter() - started) * 1000)
                time.sleep(0.02)
    return latencies


def under_load(url: str, clients: int, seconds: float) -> tuple[list[int], dict[str, list[float]]]:
    stop = threading.Event()
    with ThreadPoolExecutor(clients + 1) as pool:
        posting = [pool.submit(post_until, url, stop) for _ in range(clients)]
        probing = pool.submit(probe_until, url, stop)
        time.sleep(seconds)
        stop.set()
        return [status for future in posting for status in future.result()], probing.result()


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


@pytest.mark.parametrize("server", list(SERVERS))
def test_probes_answer_and_batches_grow_while_a_slow_model_runs(
    server: str, record_property: Callable[[str, object], None]
) -> None:
    with running_server(*SERVERS[server], LOG_LEVEL="WARNING") as (_, url):
        calls_before, rows_before = predict_calls(url, "titanic")
        alone, _ = under_load(url, clients=1, seconds=2)
        calls_alone, rows_alone = predict_calls(url, "titanic")
        loaded, probes = under_load(url, clients=CLIENTS, seconds=LOADED_SECONDS)
        calls_loaded, rows_loaded = predict_calls(url, "titanic")

    batch_alone = (rows_alone - rows_before) / (calls_alone - calls_before)
    batch_loaded = (rows_loaded - rows_alone) / (calls_loaded - calls_alone)
    figures = {
        "requests": len(loaded),
        "mean_batch_c1": round(batch_alone, 2),
        "mean_batch_c16": round(batch_loaded, 2),
        **{f"{path[1:]}_p99_ms": round(p99(taken), 1) for path, taken in probes.items()},
        **{f"{path[1:]}_max_ms": round(max(taken), 1) for path, taken in probes.items()},
        "probes": sum(len(taken) for taken in probes.values()),
    }
    for name, value in figures.items():
        record_property(name, value)
    print(server, figures)

    assert set(alone) == set(loaded) == {200}, f"a request was lost or failed: {Counter(alone + loaded)}"
    assert rows_loaded - rows_alone == len(loaded), "rows predicted and requests answered differ"
    assert batch_alone == 1.0, figures
    assert batch_loaded >= CLIENTS / 4, figures
    for path, taken in probes.items():
        assert len(taken) >= 50, figures
        assert p99(taken) <= PROBE_P99_MS, f"{path}: {figures}"
