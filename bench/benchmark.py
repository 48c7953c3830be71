"""Serving benchmark: every scenario side by side, in one run, on this machine.

    ./pants run bench:bench                # full run (about 15 minutes); writes bench/results/
    ./pants run bench:bench -- --rounds 1    # one pass (about 5 minutes)

Each app runs as production runs it: the packaged PEX (`./pants package` is run first,
without the daemon since `./pants run` holds it), N uvicorn workers, the gRPC API on,
JSON access logs on (to a file, as a container's stdout would be collected). The load
comes from `wrk` (Debian's package) on loopback, with a Lua script for the body and for
the figures; gRPC's from `h2load` (Debian's nghttp2-client), which sends one unary gRPC
call's frame over HTTP/2 and logs each call's time (its gRPC status, which h2load does
not read, is counted by the server's metrics: any but OK is an error). Every scenario
has a warm-up, then a fixed duration; the harness stops everything it started. This
machine is a VM whose speed drifts by tens of percent within seconds, so the figures a
ratio compares are measured together (`bench_report.COMPARED`; an app's variants run
side by side, idle but for the one under load): in one-second slices taken in turn (a
slice that completes nothing, as when every request outlasts it, is taken again for
twice as long). Every figure is measured in such slices (p50: the median of its slices';
p99: the highest), every other round in the opposite order, and the whole pass runs
`--rounds` times (3): each figure is the median of its rounds, and each ratio the median
of its per-round ratios.

Then the overload scenario (`overload.py`): open-loop arrivals at 3 and 10 times each case's
capacity, from callers with 1 s deadlines, over REST and gRPC.

Results: a table on stdout, bench/results/results.json and bench/results/results.png,
with the CPU model and count. These are figures, not pass marks: nothing here fails
on a number (the harness's smoke test only checks that it measures).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench_report import (
    COMPARED,
    DIABETES_1,
    DIABETES_CEILING,
    GRPC_1,
    IRIS_1,
    IRIS_CEILING,
    TITANIC_1,
    overload_targets,
    percentile,
    ratios,
    render_chart,
    table,
)
from inference_grpc import grpc_predict_v2_pb2 as pb  # pants: no-infer-dep (compiled in the build)
from prometheus_client.parser import text_string_to_metric_families

PASSENGER = {
    "PassengerId": 892,
    "Pclass": 3,
    "Name": "Kelly, Mr. James",
    "Sex": "male",
    "Age": 34.5,
    "SibSp": 0,
    "Parch": 0,
    "Ticket": "330911",
    "Fare": 7.8292,
    "Cabin": None,
    "Embarked": "Q",
}
FLOWER = {"sepal_length_cm": 5.1, "sepal_width_cm": 3.5, "petal_length_cm": 1.4, "petal_width_cm": 0.2}
PATIENT = {
    "age": 59,
    "sex": 2,
    "bmi": 32.1,
    "bp": 101,
    "s1": 157,
    "s2": 93.2,
    "s3": 38,
    "s4": 4,
    "s5": 4.8598,
    "s6": 87,
}
PASSENGER_TENSORS: list[tuple[str, str, Any]] = [
    ("PassengerId", "INT64", 892),
    ("Pclass", "INT64", 3),
    ("Name", "BYTES", "Kelly, Mr. James"),
    ("Sex", "BYTES", "male"),
    ("Age", "FP64", 34.5),
    ("SibSp", "INT64", 0),
    ("Parch", "INT64", 0),
    ("Ticket", "BYTES", "330911"),
    ("Fare", "FP64", 7.8292),
    ("Embarked", "BYTES", "Q"),
]
V2_PASSENGER = {
    "inputs": [
        {"name": name, "shape": [1], "datatype": datatype, "data": [value]}
        for name, datatype, value in PASSENGER_TENSORS
    ]
}
CONTENTS = {"INT64": "int64_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def grpc_request(rows: int) -> bytes:
    """The same passenger `rows` times as one gRPC ModelInfer request, serialised."""
    request = pb.ModelInferRequest(
        model_name="titanic",
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name=name,
                datatype=datatype,
                shape=[rows],
                contents=pb.InferTensorContents(
                    **{CONTENTS[datatype]: [value.encode() if datatype == "BYTES" else value] * rows}
                ),
            )
            for name, datatype, value in PASSENGER_TENSORS
        ],
    )
    serialised: bytes = request.SerializeToString()
    return serialised


def grpc_frame(rows: int) -> bytes:
    """That request as a gRPC call's frame on the wire: uncompressed, then its length, big-endian."""
    message = grpc_request(rows)
    return b"\x00" + len(message).to_bytes(4, "big") + message


GRPC_PASSENGER = grpc_request(1)
GRPC_FRAME = grpc_frame(1)
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"

# app -> its PEX, where `./pants package` puts it under dist/
APPS = {
    "titanic": "services.titanic/serve.pex",
    "iris": "services.iris/serve.pex",
    "diabetes": "services.diabetes/serve.pex",
    "baseline": "bench.baseline/baseline.pex",
    "slow": "tests.reliability/slow_model_serve.pex",
}
PACKAGES = [
    "services/titanic:serve",
    "services/iris:serve",
    "services/diabetes:serve",
    "bench/baseline",
    "tests/reliability:slow_model_serve",
]


@dataclass(frozen=True)
class Scenario:
    name: str
    app: str
    path: str
    body: Any = None  # JSON body for a POST; None for a GET; bytes: a gRPC call's frame
    grpc: bool = False  # sent by h2load to the gRPC port

    def lua(self) -> str:
        lines = []
        if self.body is not None:
            lines += [
                'wrk.method = "POST"',
                'wrk.headers["content-type"] = "application/json"',
                f"wrk.body = [==[{json.dumps(self.body)}]==]",
            ]
        lines.append(
            "done = function(summary, latency, requests)\n"
            "  local e = summary.errors\n"
            '  io.write(string.format("RESULT {\\"requests\\": %d, \\"duration_us\\": %d, \\"errors\\": %d,'
            ' \\"non_2xx\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d}\\n", summary.requests, summary.duration,'
            " e.connect + e.read + e.write + e.timeout, e.status,"
            " latency:percentile(50), latency:percentile(99)))\n"
            "end"
        )
        return "\n".join(lines) + "\n"


SCENARIOS = [
    Scenario("framework ceiling (/health_check/load_balancer)", "titanic", "/health_check/load_balancer"),
    Scenario(TITANIC_1, "titanic", "/predict_survival_by_passengers", [PASSENGER]),
    Scenario("titanic, batch of 100", "titanic", "/predict_survival_by_passengers", [PASSENGER] * 100),
    Scenario("titanic, batch of 1000", "titanic", "/predict_survival_by_passengers", [PASSENGER] * 1000),
    Scenario("titanic, v2 infer, 1 row", "titanic", "/v2/models/titanic/infer", V2_PASSENGER),
    Scenario(GRPC_1, "titanic", MODEL_INFER, GRPC_FRAME, grpc=True),
    Scenario(IRIS_CEILING, "iris", "/health_check/load_balancer"),
    Scenario(IRIS_1, "iris", "/predict_species", [FLOWER]),
    Scenario(DIABETES_CEILING, "diabetes", "/health_check/load_balancer"),
    Scenario(DIABETES_1, "diabetes", "/predict_progression", [PATIENT]),
    Scenario(
        "baseline (seed style), 1 passenger", "baseline", "/predict_survival_by_passengers", [PASSENGER]
    ),
]

SLOW_SCENARIOS = [
    Scenario("slow model, 1 passenger", "slow", "/predict_survival_by_passengers", [PASSENGER]),
    Scenario("/livez, while the slow model is loaded", "slow", "/livez"),
]


@dataclass
class Measurement:
    scenario: str
    app: str
    workers: int
    concurrency: int
    micro_batching: bool
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    non_2xx: int
    worker_rss_mb: list[float] = field(default_factory=list)
    rounds_requests_per_second: list[float] = field(default_factory=list)
    rounds_p50_ms: list[float] = field(default_factory=list)
    rounds_p99_ms: list[float] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return 0


# With one worker, the server gets CPU 1 and wrk CPU 0, so they never compete for a core and
# runs compare; with more workers than spare cores, neither is pinned.
SERVER_CPU, LOAD_CPU = "1", "0"


def pinned(workers: int) -> bool:
    return workers == 1 and (os.cpu_count() or 1) >= 2


def on_cpu(cpu: str, command: list[str], pin: bool) -> list[str]:
    return ["taskset", "-c", cpu, *command] if pin else command


Server = tuple[str, subprocess.Popen[bytes], float, str]  # URL, process, seconds to ready, gRPC URL


@contextmanager
def running(
    pex: Path, workers: int, micro_batching: bool, logs: Path, settings: dict[str, str] | None = None
) -> Iterator[Server]:
    """The app on free ports (REST and gRPC), ready; `settings`: more of its environment."""
    port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "GRPC_PORT": str(grpc_port),
        "WORKERS": str(workers),
        "LOG_LEVEL": "info",
        "MICRO_BATCHING": str(micro_batching).lower(),
        **(settings or {}),
    }
    with (logs / f"{pex.stem}-{port}.log").open("wb") as log:
        started = time.monotonic()
        process = subprocess.Popen(
            on_cpu(SERVER_CPU, [sys.executable, str(pex)], pinned(workers)),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            while get_status(url + "/readyz") != 200:
                if process.poll() is not None or time.monotonic() - started > 120:
                    raise RuntimeError(f"{pex} did not become ready; see {log.name}")
                time.sleep(0.02)
            yield url, process, time.monotonic() - started, f"http://127.0.0.1:{grpc_port}"
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def worker_rss_mb(process: subprocess.Popen[bytes]) -> list[float]:
    """Resident memory of each process serving requests: the workers, or the server itself if alone."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    pids = [int(pid) for pid in children] or [process.pid]
    sizes = []
    for pid in pids:
        sizes.append(round(vm_rss_bytes(Path(f"/proc/{pid}/status").read_text()) / 2**20, 1))
    return sizes


def vm_rss_bytes(status: str) -> int:
    """VmRSS from a /proc/<pid>/status text, which the kernel prints in kB (of 1024 bytes)."""
    found = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.MULTILINE)
    if not found:
        raise ValueError(f"no VmRSS in kB in:\n{status}")
    return int(found[1]) * 1024


LONGEST_SLICE = 8  # seconds; wrk's own request timeout is 10 s
_SCRIPT_NUMBERS = itertools.count()


def wrk(
    url: str, scenario: Scenario, concurrency: int, seconds: float, scratch: Path, pin: bool
) -> dict[str, int]:
    return wrk_result(start_wrk(url, scenario, concurrency, seconds, scratch, pin))


def load(
    server: Server, scenario: Scenario, concurrency: int, seconds: float, scratch: Path, pin: bool
) -> dict[str, int]:
    """`seconds` of `scenario` against `server`: wrk's figures, or h2load's for a gRPC scenario."""
    if not scenario.grpc:
        return wrk(server[0], scenario, concurrency, seconds, scratch, pin)
    failed_before = grpc_failures(server[0])
    figures = h2load(server[3], scenario, concurrency, seconds, scratch, pin)
    figures["non_2xx"] += grpc_failures(server[0]) - failed_before
    return figures


def h2load(
    grpc_url: str, scenario: Scenario, concurrency: int, seconds: float, scratch: Path, pin: bool
) -> dict[str, int]:
    """One h2load run, as wrk's figures: unary calls of `scenario.body` on `concurrency`
    connections, one call at a time on each (as wrk's HTTP/1.1 connections)."""
    number = next(_SCRIPT_NUMBERS)
    body, log = scratch / f"grpc-{number}.bin", scratch / f"grpc-{number}.log"
    body.write_bytes(scenario.body)
    command = [
        "h2load", "-t1", f"-c{concurrency}", "-m1", f"-D{max(1, round(seconds))}",
        "-H", "content-type: application/grpc", "-H", "te: trailers",
        "-d", str(body), f"--log-file={log}", grpc_url + scenario.path,
    ]  # fmt: skip
    output = subprocess.run(on_cpu(LOAD_CPU, command, pin), capture_output=True, text=True, check=True).stdout
    return h2load_figures(output, log.read_text())


# h2load prints its run's time with the largest unit it reaches (nghttp2's util::format_duration:
# "850us", "998.53ms", "1.00s"); its --log-file gives each call's time in microseconds.
H2LOAD_FINISHED = re.compile(r"^finished in (\d+(?:\.\d+)?)(us|ms|s), ", re.MULTILINE)
H2LOAD_REQUESTS = re.compile(
    r"^requests: (?P<total>\d+) total, (?P<started>\d+) started, (?P<done>\d+) done, "
    r"(?P<succeeded>\d+) succeeded, (?P<failed>\d+) failed, (?P<errored>\d+) errored, "
    r"(?P<timeout>\d+) timeout$",
    re.MULTILINE,
)
MICROSECONDS = {"us": 1, "ms": 1_000, "s": 1_000_000}


def h2load_figures(output: str, log: str) -> dict[str, int]:
    """h2load's summary (`output`) and per-call log (`log`) as wrk's figures, in microseconds."""
    finished, requests = H2LOAD_FINISHED.search(output), H2LOAD_REQUESTS.search(output)
    if not finished or not requests:
        raise ValueError(f"h2load printed no summary this harness can read:\n{output}")
    counts = {name: int(value) for name, value in requests.groupdict().items()}
    times = [float(line.split("\t")[2]) for line in log.splitlines() if line.strip()]
    return {
        "requests": counts["done"],
        "duration_us": round(float(finished[1]) * MICROSECONDS[finished[2]]),
        "errors": counts["errored"] + counts["timeout"],
        "non_2xx": counts["done"] - counts["succeeded"],
        "p50_us": round(percentile(times, 0.5)),
        "p99_us": round(percentile(times, 0.99)),
    }


def grpc_failures(url: str) -> int:
    """ModelInfer calls the server answered with a status other than OK, from its metrics. Not
    CANCELLED: h2load cancels the calls it has in flight when its time is up."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return round(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "grpc_server_handled_total"
            and sample.labels.get("grpc_method") == "ModelInfer"
            and sample.labels.get("grpc_code") not in ("OK", "CANCELLED")
        )
    )


def start_wrk(
    url: str, scenario: Scenario, concurrency: int, seconds: float, scratch: Path, pin: bool
) -> subprocess.Popen[str]:
    script = scratch / f"scenario-{next(_SCRIPT_NUMBERS)}.lua"  # wrk runs may overlap
    script.write_text(scenario.lua())
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url + scenario.path,
    ]
    return subprocess.Popen(on_cpu(LOAD_CPU, command, pin), stdout=subprocess.PIPE, text=True)


def wrk_result(process: subprocess.Popen[str]) -> dict[str, int]:
    output, _ = process.communicate()
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, process.args, output)
    return wrk_figures(output)


def wrk_figures(output: str) -> dict[str, int]:
    """The figures `Scenario.lua`'s `done` printed: wrk's Lua API gives its run's duration and
    latencies as numbers of microseconds, never as text with a unit (wrk's SCRIPTING)."""
    line = next((line for line in output.splitlines() if line.startswith("RESULT ")), None)
    if line is None:
        raise ValueError(f"wrk printed no RESULT line:\n{output}")
    return {name: int(value) for name, value in json.loads(line.removeprefix("RESULT ")).items()}


def one_slice(
    server: Server, scenario: Scenario, concurrency: int, scratch: Path, pin: bool
) -> dict[str, int]:
    """One slice of a measurement: a second of load, taken again for twice as long (up to
    `LONGEST_SLICE` seconds) while it completes nothing, as when every request outlasts it.
    """
    seconds = 1
    while True:
        figures = load(server, scenario, concurrency, seconds, scratch, pin)
        if figures["requests"] or seconds >= LONGEST_SLICE:
            return figures
        seconds *= 2


def measure_together(
    jobs: list[Job],
    servers: dict[tuple[int, bool], Server],
    *,
    warmup: float,
    duration: float,
    scratch: Path,
) -> list[Measurement]:
    """`jobs`, each warmed up, then measured in one-second slices taken in turn (the order reversed
    every other slice), so that a slow spell of the VM falls on all of them alike.

    Throughput counts every slice's requests; p50 is the median of the slices' p50s and p99
    the highest of their p99s (wrk reports percentiles per run, not a pooled histogram).
    """
    for scenario, workers, batching, concurrency in jobs:
        load(servers[workers, batching], scenario, concurrency, warmup, scratch, pinned(workers))
    slices: list[list[dict[str, int]]] = [[] for _ in jobs]
    for number in range(max(1, round(duration))):
        for index in range(len(jobs)) if number % 2 == 0 else reversed(range(len(jobs))):
            scenario, workers, batching, concurrency = jobs[index]
            server = servers[workers, batching]
            slices[index].append(one_slice(server, scenario, concurrency, scratch, pinned(workers)))
    measured = []
    for (scenario, workers, batching, concurrency), figures in zip(jobs, slices, strict=True):
        requests = sum(one["requests"] for one in figures)
        seconds = sum(one["duration_us"] for one in figures) / 1e6
        measurement = Measurement(
            scenario=scenario.name,
            app=scenario.app,
            workers=workers,
            concurrency=concurrency,
            micro_batching=batching,
            requests_per_second=round(requests / seconds, 1),
            p50_ms=statistics.median(one["p50_us"] for one in figures) / 1000,
            p99_ms=max(one["p99_us"] for one in figures) / 1000,
            errors=sum(one["errors"] for one in figures),
            non_2xx=sum(one["non_2xx"] for one in figures),
            worker_rss_mb=worker_rss_mb(servers[workers, batching][1]),
        )
        print(
            f"  {scenario.name:<50} w{workers} c{concurrency:<3}{'' if batching else ' unbatched'}"
            f" {measurement.requests_per_second:>9.1f} req/s"
            f"  p50 {measurement.p50_ms:7.2f} ms  p99 {measurement.p99_ms:7.2f} ms"
            f"  errors {measurement.errors + measurement.non_2xx}",
            flush=True,
        )
        measured.append(measurement)
    return measured


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), ""
    )
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def package(repo: Path) -> None:
    """Build the PEXes; `./pants run` holds the daemon, so this Pants runs without one."""
    env = {**os.environ, "PANTS_CONCURRENT": "True"}
    subprocess.run(["./pants", "package", *PACKAGES], cwd=repo, env=env, check=True)


def run(
    pexes: Path, *, duration: float, warmup: float, scenarios: list[Scenario], full: bool, rounds: int = 1
) -> dict[str, Any]:
    """Measure `scenarios` against the PEXes under `pexes`, `rounds` times over; each figure is the
    median of its rounds. `full` adds 2 workers and batching off."""
    passes = []
    for number in range(1, rounds + 1):
        print(f"round {number} of {rounds}", flush=True)
        passes.append(
            measure_once(
                pexes,
                duration=duration,
                warmup=warmup,
                scenarios=scenarios,
                full=full,
                backwards=number % 2 == 0,
            )
        )
    return {
        "machine": machine(),
        "duration_seconds": duration,
        "rounds": rounds,
        "pinning": f"1 worker: server on CPU {SERVER_CPU}, wrk on CPU {LOAD_CPU}; 2 workers: not pinned",
        "startup_seconds": {
            app: round(statistics.median(startup[app] for startup, _ in passes), 2) for app in passes[0][0]
        },
        "results": [
            asdict(median_of(list(same))) for same in zip(*(results for _, results in passes), strict=True)
        ],
    }


def median_of(rounds: list[Measurement]) -> Measurement:
    """One scenario's figures over rounds: medians, errors summed, each round's throughput kept."""
    first = rounds[0]
    return replace(
        first,
        requests_per_second=statistics.median(r.requests_per_second for r in rounds),
        p50_ms=statistics.median(r.p50_ms for r in rounds),
        p99_ms=statistics.median(r.p99_ms for r in rounds),
        errors=sum(r.errors for r in rounds),
        non_2xx=sum(r.non_2xx for r in rounds),
        worker_rss_mb=rounds[-1].worker_rss_mb,
        rounds_requests_per_second=[r.requests_per_second for r in rounds],
        rounds_p50_ms=[r.p50_ms for r in rounds],
        rounds_p99_ms=[r.p99_ms for r in rounds],
    )


Job = tuple[Scenario, int, bool, int]  # scenario, workers, micro-batching, concurrency


def key(job: Job) -> tuple[str, int, int, bool]:
    """A job as `COMPARED` names it: (scenario, workers, concurrency, micro-batching)."""
    scenario, workers, batching, concurrency = job
    return scenario.name, workers, concurrency, batching


def schedule(scenarios: list[Scenario], variants: list[tuple[int, bool]]) -> list[list[Job]]:
    """One app's measurements, in steps each measured together: every group of `COMPARED` figures
    the app has, then every other figure on its own.

    Every scenario runs on 1 worker with batching at concurrency 1 and 16; with 2 workers at 16;
    batching off only for the single passenger at 1 (the batching-cost comparison).
    """
    jobs: list[Job] = []
    for workers, batching in variants:
        for scenario in scenarios:
            if not batching and scenario.name != TITANIC_1:
                continue
            levels = [1, 16] if (workers, batching) == (1, True) else [16] if batching else [1]
            jobs += [(scenario, workers, batching, concurrency) for concurrency in levels]
    by_key = {key(job): job for job in jobs}
    groups = [[by_key[name] for name in group] for group in COMPARED if all(name in by_key for name in group)]
    grouped = {key(job) for group in groups for job in group}
    return groups + [[job] for job in jobs if key(job) not in grouped]


def measure_once(
    pexes: Path,
    *,
    duration: float,
    warmup: float,
    scenarios: list[Scenario],
    full: bool,
    backwards: bool = False,
) -> tuple[dict[str, float], list[Measurement]]:
    """One pass over every app, variant and scenario: (start-up seconds per app, measurements).

    An app's variants (workers, batching on/off) all run at once, idle but for the one being
    measured, so that compared figures can be measured together. `backwards` runs each app's
    schedule in reverse (alternate rounds do), so neither side of a pair always goes first.
    """
    results: list[Measurement] = []
    startup: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        for app in dict.fromkeys(scenario.app for scenario in scenarios):
            pex = pexes / APPS[app]
            with running(pex, 1, True, scratch):
                pass  # a PEX's first start builds its venv; start-up is timed on the next
            variants = [(1, True), (2, True), (1, False)] if full else [(1, True)]
            if app == "baseline":
                variants = [variant for variant in variants if variant[1]]
            steps = schedule([scenario for scenario in scenarios if scenario.app == app], variants)
            with ExitStack() as servers:
                started = {}
                for workers, batching in variants:  # one at a time: start-up is timed alone
                    started[workers, batching] = servers.enter_context(
                        running(pex, workers, batching, scratch)
                    )
                startup[app] = round(started[1, True][2], 2)
                measured: list[list[Measurement]] = [[] for _ in steps]
                for index in reversed(range(len(steps))) if backwards else range(len(steps)):
                    step = steps[index][::-1] if backwards else steps[index]
                    figures = measure_together(
                        step, started, warmup=warmup, duration=duration, scratch=scratch
                    )
                    measured[index] = figures[::-1] if backwards else figures
                results += [figure for step_figures in measured for figure in step_figures]
    return startup, results


def slow_model(pexes: Path, seconds: float) -> dict[str, Any]:
    """A model that computes 300 ms per call (tests/reliability/slow_model.py) under 16 clients,
    and /livez polled by one more client meanwhile: the event loop's latency behind a busy model."""
    predict, probe = SLOW_SCENARIOS
    with tempfile.TemporaryDirectory() as scratch_dir, running(
        pexes / APPS["slow"], 1, True, Path(scratch_dir)
    ) as (url, _, _, _):
        scratch = Path(scratch_dir)
        wrk(url, predict, 16, 2, scratch, pin=True)  # warm-up
        loaded = start_wrk(url, predict, 16, seconds, scratch, pin=True)
        probed = start_wrk(url, probe, 1, seconds - 1, scratch, pin=True)
        figures = {"predict_c16": wrk_result(loaded), "livez_c1_meanwhile": wrk_result(probed)}
    return {
        name: {
            "requests_per_second": round(one["requests"] / (one["duration_us"] / 1e6), 1),
            "p50_ms": one["p50_us"] / 1000,
            "p99_ms": one["p99_us"] / 1000,
            "errors": one["errors"] + one["non_2xx"],
        }
        for name, one in figures.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5, help="seconds measured per scenario and round")
    parser.add_argument(
        "--rounds", type=int, default=3, help="passes over every scenario; figures are medians"
    )
    parser.add_argument("--warmup", type=float, default=2, help="seconds of load before measuring")
    parser.add_argument("--output", type=Path, default=None, help="where results go (bench/results)")
    parser.add_argument("--no-package", action="store_true", help="use the PEXes already in dist/")
    parser.add_argument("--quick", action="store_true", help="1 worker, batching on only (for a smoke run)")
    parser.add_argument(
        "--overload-seconds", type=float, default=15, help="seconds of each overload case and rate"
    )
    parser.add_argument(
        "--overload-only",
        action="store_true",
        help="the overload scenario alone (written to dist/bench-overload unless --output says otherwise)",
    )
    arguments = parser.parse_args(argv)
    repo = Path.cwd()
    if not arguments.no_package:
        package(repo)
    if arguments.overload_only:
        report: dict[str, Any] = {
            "machine": machine(),
            "results": [],
            "startup_seconds": {},
            "duration_seconds": 0,
        }
    else:
        report = run(
            repo / "dist",
            duration=arguments.duration,
            warmup=arguments.warmup,
            scenarios=SCENARIOS,
            full=not arguments.quick,
            rounds=arguments.rounds,
        )
        if not arguments.quick:
            print("slow model (300 ms per call)", flush=True)
            report["slow_model"] = slow_model(repo / "dist", seconds=10)
    if not arguments.quick:
        print(f"overload ({arguments.overload_seconds:g} s per case and rate)", flush=True)
        import overload  # it imports this module

        report["overload"] = overload.run(repo / "dist", seconds=arguments.overload_seconds)
    default = "dist/bench-overload" if arguments.overload_only else "bench/results"
    write(report, repo / (arguments.output or Path(default)))


def write(report: dict[str, Any], output: Path) -> None:
    report["ratios"] = ratios(report)
    report["overload_targets"] = overload_targets(report)
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    render_chart(report, output / "results.png")
    print(table(report))


if __name__ == "__main__":
    main()
