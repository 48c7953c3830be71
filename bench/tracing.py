"""What tracing costs (issue #28): titanic's one-passenger REST route and its gRPC ModelInfer
call under 16 concurrent clients, with tracing off (no OTLP endpoint: the default) and on at a
1 % sample (`parentbased_traceidratio`, 0.01), its spans exported over OTLP/HTTP to a collector
in this process that counts them.

    ./pants run bench:tracing                  # 3 rounds of 5 s per figure
    ./pants run bench:tracing -- --rounds 1

Both servers are the packaged PEX with one worker, side by side on one core (the load on the
other), idle but for the one measured; their figures are taken in one-second slices in turn, as
bench:bench measures what it compares, every other round in the opposite order. Each figure is
the median of its rounds. Prints a table and writes bench/results/tracing.json. Figures, not
pass marks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench_report import GRPC_1, TITANIC_1
from benchmark import APPS, SCENARIOS, machine, one_slice, running

CONCURRENCY = 16
SAMPLED = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}


class SpanSink:
    """An OTLP/HTTP endpoint that answers every export at once and counts what it was sent."""

    def __init__(self) -> None:
        self.exports = 0
        self.bytes = 0
        sink = self

        class Receive(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # (http.server's name)
                sink.bytes += len(self.rfile.read(int(self.headers["content-length"])))
                sink.exports += 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Receive)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def measure(pex: Path, seconds: int, rounds: int) -> dict[str, Any]:
    """Each scenario with tracing off and on, `rounds` times over: req/s, p50 and p99 per side."""
    scenarios = [scenario for scenario in SCENARIOS if scenario.name in (TITANIC_1, GRPC_1)]
    sink = SpanSink()
    figures: dict[str, dict[str, list[dict[str, float]]]] = {
        scenario.name: {"off": [], "on": []} for scenario in scenarios
    }
    with tempfile.TemporaryDirectory() as scratch_dir, ExitStack() as stack:
        scratch = Path(scratch_dir)
        servers = {
            "off": stack.enter_context(running(pex, 1, True, scratch)),
            "on": stack.enter_context(
                running(pex, 1, True, scratch, {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, **SAMPLED})
            ),
        }
        for number in range(rounds):
            sides = ["off", "on"] if number % 2 == 0 else ["on", "off"]
            for scenario in scenarios:
                for side in sides:  # warm-up
                    one_slice(servers[side], scenario, CONCURRENCY, scratch, pin=True)
                slices: dict[str, list[dict[str, int]]] = {side: [] for side in sides}
                for second in range(seconds):
                    for side in sides if second % 2 == 0 else sides[::-1]:
                        slices[side].append(
                            one_slice(servers[side], scenario, CONCURRENCY, scratch, pin=True)
                        )
                for side, taken in slices.items():
                    requests = sum(one["requests"] for one in taken)
                    figures[scenario.name][side].append(
                        {
                            "requests_per_second": requests
                            / (sum(one["duration_us"] for one in taken) / 1e6),
                            "p50_ms": statistics.median(one["p50_us"] for one in taken) / 1000,
                            "p99_ms": max(one["p99_us"] for one in taken) / 1000,
                            "errors": sum(one["errors"] + one["non_2xx"] for one in taken),
                        }
                    )
    results = {
        name: {
            side: {key: round(statistics.median(one[key] for one in rounds_), 3) for key in rounds_[0]}
            for side, rounds_ in sides_.items()
        }
        for name, sides_ in figures.items()
    }
    return {
        "machine": machine(),
        "concurrency": CONCURRENCY,
        "sampler": SAMPLED,
        "seconds": seconds,
        "rounds": rounds,
        "exports": sink.exports,
        "exported_bytes": sink.bytes,
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5, help="seconds measured per figure and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-package", action="store_true", help="use the PEX already in dist/")
    parser.add_argument("--output", type=Path, default=Path("bench/results"))
    arguments = parser.parse_args()
    repo = Path.cwd()
    if not arguments.no_package:  # `./pants run` holds the daemon: this Pants runs without one
        env = {**os.environ, "PANTS_CONCURRENT": "True"}
        subprocess.run(["./pants", "package", "services/titanic:serve"], cwd=repo, env=env, check=True)
    report = measure(repo / "dist" / APPS["titanic"], arguments.seconds, arguments.rounds)
    print(
        f"{report['machine']['cpu_count']} x {report['machine']['cpu_model']}; c{CONCURRENCY}, "
        f"{arguments.seconds} s per figure, median of {arguments.rounds} rounds"
    )
    print(f"{'scenario':<40} {'tracing':<14} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for name, sides in report["results"].items():
        for side, label in (("off", "off"), ("on", "on, 1 % kept")):
            one = sides[side]
            print(
                f"{name:<40} {label:<14} {one['requests_per_second']:>9.1f} {one['p50_ms']:>8.2f}"
                f" {one['p99_ms']:>8.2f} {one['errors']:>6}"
            )
        ratio = sides["on"]["requests_per_second"] / sides["off"]["requests_per_second"]
        print(f"{'':<40} {'on / off':<14} {ratio:>9.3f}")
    print(f"spans exported: {report['exports']} posts, {report['exported_bytes']} bytes")
    arguments.output.mkdir(parents=True, exist_ok=True)
    (arguments.output / "tracing.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
