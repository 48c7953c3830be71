"""The benchmark's overload scenario (issue #24): callers arriving faster than a worker can serve.

For each case (Titanic, a batch of 100 passengers or one, over REST or gRPC), on a fresh
server (one worker on its own CPU, as the benchmark runs it): its capacity first, the most it
answers to 16 closed-loop clients; then, for `seconds`, open-loop arrivals at 3 and 10 times
that rate from callers who give up after a second:
- REST: `openloop` on the load's CPU, each caller closing its connection at its deadline (and
  sending it as X-Request-Timeout-Ms, as the README advises);
- gRPC: h2load, each call with a 1 s `grpc-timeout`, gRPC's own deadline, at the rate (`--rps`)
  over 16 HTTP/2 connections.

Meanwhile a prober GETs /livez on a new connection every 20 ms (as the kubelet does), the
worker's memory is sampled, and for gRPC a client sends one call every 20 ms (refusals'
latency, which h2load cannot tell from answers). After the load, a request is sent every
10 ms until one is answered within 100 ms: the recovery time.

Figures per case and rate: goodput (answers within the deadline, per second; gRPC's from the
server's OK calls, which its deadline bounds from the moment a call reaches it: a call waiting
in h2load for one of its connection's streams, past the server's stream limit, is not timed,
so gRPC's goodput is the worker's, not its callers') over capacity, refusals and their p99, /livez
p99, the worker's memory growth, and the recovery time. `bench_report.overload_targets` holds
them to the issue's targets.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openloop
from bench_report import percentile
from benchmark import (
    APPS,
    GRPC_PASSENGER,
    LOAD_CPU,
    MODEL_INFER,
    PASSENGER,
    Scenario,
    grpc_frame,
    load,
    on_cpu,
    running,
    worker_rss_mb,
)
from prometheus_client.parser import text_string_to_metric_families

MULTIPLES = (3, 10)
DEADLINE_SECONDS = 1.0
CAPACITY_SECONDS = 3.0
PROBE_SECONDS = 0.02
RECOVERED_MS = 100.0  # a request answered within this after the load stops: recovered
REFUSAL_RATE = 4000.0  # refusals a second, when measuring what one costs
PREDICT = "/predict_survival_by_passengers"


@dataclass(frozen=True)
class Case:
    name: str
    rows: int
    grpc: bool

    def scenario(self) -> Scenario:
        if self.grpc:
            return Scenario(self.name, "titanic", MODEL_INFER, grpc_frame(self.rows), grpc=True)
        return Scenario(self.name, "titanic", PREDICT, [PASSENGER] * self.rows)


CASES = [
    Case("titanic, batch of 100", 100, grpc=False),
    Case("titanic, 1 passenger", 1, grpc=False),
    Case("titanic, gRPC, batch of 100", 100, grpc=True),
    Case("titanic, gRPC, 1 passenger", 1, grpc=True),
]


def run(
    pexes: Path, *, seconds: float, cases: list[Case] = CASES, multiples: tuple[int, ...] = MULTIPLES
) -> dict[str, list[dict[str, Any]]]:
    """What a REST refusal costs, then every case at every multiple of its capacity, each on a
    fresh server."""
    results: list[dict[str, Any]] = []
    costs: list[dict[str, Any]] = []
    pex = pexes / APPS["titanic"]
    with tempfile_directory() as scratch:
        for rows in sorted({case.rows for case in cases}):
            cost = refusal_cost(pex, rows, REFUSAL_RATE, min(seconds, 5.0), scratch)
            print(
                f"  overload: a REST refusal of {rows} row(s): {cost['cpu_us_per_refusal']} us of server CPU"
            )
            costs.append(cost)
        for case in cases:
            for multiple in multiples:
                figures = measure(pex, case, multiple, seconds, scratch)
                capacity = figures["capacity_per_second"]
                print(
                    f"  overload: {case.name:<32} {multiple:>2}x capacity {capacity:>7.0f}/s:"
                    f" goodput {figures['goodput_ratio']:.2f},"
                    f" refused p99 {figures['refused_p99_ms']:.1f} ms,"
                    f" /livez p99 {figures['livez_p99_ms']:.1f} ms, RSS +{figures['rss_growth_mb']:.0f} MB,"
                    f" recovered in {figures['recovery_seconds']:.2f} s",
                    flush=True,
                )
                results.append(figures)
    return {"cases": results, "refusal_cost": costs}


@contextmanager
def tempfile_directory() -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


def measure(pex: Path, case: Case, multiple: int, seconds: float, scratch: Path) -> dict[str, Any]:
    scenario = case.scenario()
    with running(pex, 1, True, scratch) as server:
        url, process, _, grpc_url = server
        load(server, scenario, 16, 1, scratch, pin=True)  # warm-up
        capacity_figures = load(server, scenario, 16, CAPACITY_SECONDS, scratch, pin=True)
        capacity = capacity_figures["requests"] / (capacity_figures["duration_us"] / 1e6)
        rate = multiple * capacity
        rss_before = worker_rss_mb(process)[0]
        ok_before = grpc_calls(url).get("OK", 0.0)
        stop = threading.Event()
        livez: list[float] = []
        rss: list[float] = []
        grpc_probes: list[tuple[str, float]] = []
        threads = [
            threading.Thread(target=probe_livez, args=(url, stop, livez), daemon=True),
            threading.Thread(target=sample_rss, args=(process, stop, rss), daemon=True),
        ]
        if case.grpc:
            threads.append(
                threading.Thread(target=probe_grpc, args=(grpc_url, stop, grpc_probes), daemon=True)
            )
        started = time.monotonic()
        if case.grpc:
            running_load = start_h2load(grpc_url, scenario, rate, seconds, scratch)
        else:
            running_load = start_openloop(url, scenario, rate, seconds)
        for thread in threads:
            thread.start()
        ends = started + seconds
        time.sleep(max(0.0, ends - time.monotonic()))
        stop.set()
        recovery = recovered_after(url, scenario, ends)
        for thread in threads:
            thread.join(10)
        figures = running_load()
        calls = grpc_calls(url)
    if case.grpc:
        goodput = (calls.get("OK", 0.0) - ok_before) / seconds
        refused = [took for code, took in grpc_probes if code == "UNAVAILABLE"]
        figures = {
            "offered_per_second": figures["offered_per_second"],
            "goodput_per_second": goodput,
            "refused_p99_ms": percentile(refused, 0.99) * 1000,
            "refused_probes": len(refused),
            "grpc_codes": {code: round(count) for code, count in calls.items()},
        }
    return {
        "case": case.name,
        "transport": "gRPC" if case.grpc else "REST",
        "rows": case.rows,
        "multiple": multiple,
        "seconds": seconds,
        "capacity_per_second": round(capacity, 1),
        "rate_per_second": round(rate, 1),
        **{name: round(value, 2) if isinstance(value, float) else value for name, value in figures.items()},
        "goodput_ratio": round(figures["goodput_per_second"] / capacity, 3),
        "livez_p99_ms": round(percentile(livez, 0.99) * 1000, 1),
        "livez_max_ms": round(max(livez, default=0.0) * 1000, 1),
        "rss_growth_mb": round(max(rss, default=rss_before) - rss_before, 1),
        "recovery_seconds": round(recovery, 2),
    }


def refusal_cost(pex: Path, rows: int, rate: float, seconds: float, scratch: Path) -> dict[str, float]:
    """The server's CPU (user and system, from /proc) per REST refusal: a worker whose one place
    is held (a request admitted as its headers arrived, whose body never comes) refuses all else
    as its headers arrive, `rate` a second for `seconds`."""
    settings = {
        "ADAPTIVE_CONCURRENCY": "false",
        "MAX_CONCURRENT_REQUESTS": "1",
        "MAX_QUEUE_SECONDS": "600",
        "BODY_TIMEOUT_SECONDS": "600",
    }
    case = Case(f"refusals, {rows} row(s)", rows, grpc=False)
    with running(pex, 1, True, scratch, settings) as (url, process, _, _), held_place(url):
        before = cpu_seconds(process.pid)
        figures = start_openloop(url, case.scenario(), rate, seconds)()
        spent = cpu_seconds(process.pid) - before
    refused = figures["refused_per_second"] * seconds
    return {
        "rows": rows,
        "refused": round(refused),
        "cpu_us_per_refusal": round(spent / max(refused, 1) * 1e6, 1),
    }


@contextmanager
def held_place(url: str) -> Iterator[None]:
    """A request admitted as its headers arrive, holding its place while its body never comes."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(
            f"POST {PREDICT} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            "x-request-timeout-ms: 600000\r\ncontent-length: 100\r\n\r\n[".encode()
        )
        time.sleep(0.2)
        yield


def cpu_seconds(pid: int) -> float:
    """User and system time of process `pid`, from /proc (in clock ticks of SC_CLK_TCK)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_openloop(url: str, scenario: Scenario, rate: float, seconds: float) -> Callable[[], dict[str, Any]]:
    """The open-loop load in a process of its own on the load's CPU; returns its figures' getter."""
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    body = json.dumps(scenario.body).encode()
    headers = (
        ("content-type", "application/json"),
        ("x-request-timeout-ms", str(int(DEADLINE_SECONDS * 1000))),
    )

    def generate() -> None:
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(0, {int(LOAD_CPU)})
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        result = asyncio.run(
            openloop.run(
                url + scenario.path,
                body,
                rate=rate,
                seconds=seconds,
                deadline=DEADLINE_SECONDS,
                headers=headers,
            )
        )
        sending.send(openloop.summary(result, DEADLINE_SECONDS))

    worker = context.Process(target=generate, daemon=True)
    worker.start()

    def figures() -> dict[str, Any]:
        summary: dict[str, Any] = receiving.recv()
        worker.join(30)
        return summary

    return figures


def start_h2load(
    grpc_url: str, scenario: Scenario, rate: float, seconds: float, scratch: Path
) -> Callable[[], dict[str, Any]]:
    """h2load at `rate` calls a second (16 connections, up to 100 streams each), each call with a
    1 s gRPC deadline; returns its figures' getter."""
    clients = 16
    body = scratch / "overload-grpc.bin"
    body.write_bytes(scenario.body)
    command = [
        "h2load", "-t1", f"-c{clients}", "-m100", f"--rps={max(1, round(rate / clients))}",
        f"-D{round(seconds)}",
        "-H", "content-type: application/grpc", "-H", "te: trailers",
        "-H", f"grpc-timeout: {int(DEADLINE_SECONDS * 1000)}m",
        "-d", str(body), grpc_url + scenario.path,
    ]  # fmt: skip
    process = subprocess.Popen(on_cpu(LOAD_CPU, command, True), stdout=subprocess.PIPE, text=True)

    def figures() -> dict[str, Any]:
        output, _ = process.communicate(timeout=seconds + 60)
        requests = next((line for line in output.splitlines() if line.startswith("requests:")), "")
        done = int(requests.split(" done")[0].split()[-1]) if " done" in requests else 0
        return {"offered_per_second": done / seconds}

    return figures


def probe_livez(url: str, stop: threading.Event, taken: list[float]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            with urllib.request.urlopen(url + "/livez", timeout=5) as response:
                response.read()
        except (OSError, urllib.error.URLError):
            pass  # a probe that failed counts its time too
        taken.append(time.monotonic() - started)
        time.sleep(max(0.0, PROBE_SECONDS - (time.monotonic() - started)))


def probe_grpc(grpc_url: str, stop: threading.Event, outcomes: list[tuple[str, float]]) -> None:
    import grpc  # type: ignore[import]

    with grpc.insecure_channel(grpc_url.removeprefix("http://")) as channel:
        infer = channel.unary_unary(MODEL_INFER, request_serializer=None, response_deserializer=None)
        while not stop.is_set():
            started = time.monotonic()
            try:
                infer(GRPC_PASSENGER, timeout=DEADLINE_SECONDS)
                code = "OK"
            except grpc.RpcError as error:
                code = error.code().name
            outcomes.append((code, time.monotonic() - started))
            time.sleep(max(0.0, PROBE_SECONDS - (time.monotonic() - started)))


def sample_rss(process: subprocess.Popen[bytes], stop: threading.Event, sizes: list[float]) -> None:
    while not stop.wait(0.25):
        sizes.append(max(worker_rss_mb(process)))


def recovered_after(url: str, scenario: Scenario, ended: float) -> float:
    """Seconds from the end of the load until a request is answered within RECOVERED_MS."""
    body = json.dumps([PASSENGER]).encode()
    while time.monotonic() - ended < 30:
        started = time.monotonic()
        request = urllib.request.Request(url + PREDICT, body, {"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                answered = response.status == 200
        except (OSError, urllib.error.URLError):
            answered = False
        if answered and (time.monotonic() - started) * 1000 <= RECOVERED_MS:
            return max(0.0, started - ended)
        time.sleep(0.01)
    return float("inf")


def grpc_calls(url: str) -> dict[str, float]:
    """ModelInfer calls answered so far, by status code, from the server's metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "grpc_server_handled_total"
                and sample.labels.get("grpc_method") == "ModelInfer"
            ):
                code = sample.labels["grpc_code"]
                counts[code] = counts.get(code, 0.0) + sample.value
    return counts
