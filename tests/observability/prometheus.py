"""A real Prometheus (Debian's `prometheus` binary, which `./pants test` installs) scraping
services every second with the project's rules loaded, and its HTTP API's range queries, which are
what a Grafana panel sends.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from modelserving.dev.testing import free_port

PROMETHEUS = Path("/usr/bin/prometheus")
RULES = Path("k8s/components/environment/alerts.rules.yaml")  # relative to the repo, as DASHBOARD
SCRAPE_SECONDS = 1


@dataclass(frozen=True)
class Target:
    """A service's /metrics at `address` (host:port), with the labels a Kubernetes scrape would
    give its series (the pod's labels, its namespace), which the rules and the dashboard filter by."""

    address: str
    labels: dict[str, str] = field(default_factory=dict)


def pod_labels(service: str, namespace: str, pod: str, **more: str) -> dict[str, str]:
    """What the usual Kubernetes scrape puts on a model service pod's series (alerts.rules.yaml)."""
    return {
        "namespace": namespace,
        "pod": pod,
        "app_kubernetes_io_name": service,
        "app_kubernetes_io_part_of": "modelserving",
        **more,
    }


@contextmanager
def running_prometheus(
    directory: Path, targets: Sequence[Target], rules: Sequence[Path] = (RULES,)
) -> Iterator[str]:
    """Prometheus scraping `targets` every second and evaluating `rules` as often, its data
    and log in `directory`: its URL, once it is ready."""
    if not PROMETHEUS.exists():
        raise FileNotFoundError(f"{PROMETHEUS}: Debian's prometheus package (./pants test installs it)")
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        "rule_files": [str(rule.resolve()) for rule in rules],  # else relative to the config file
        "scrape_configs": [
            {
                "job_name": "modelserving",
                "static_configs": [{"targets": [t.address], "labels": t.labels} for t in targets],
            }
        ],
    }
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (directory / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while not _ready(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"prometheus did not start:\n{(directory / 'prometheus.log').read_text()}"
                    )
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def api(url: str, path: str, **parameters: Any) -> Any:
    """The `data` of an HTTP API answer (`/api/v1/...`); an error answer raises."""
    query = urllib.parse.urlencode(parameters)
    with urllib.request.urlopen(f"{url}{path}?{query}", timeout=30) as response:
        answer = json.loads(response.read())
    if answer["status"] != "success":
        raise RuntimeError(f"{path} {parameters}: {answer}")
    return answer["data"]


def query_range(
    url: str, expr: str, start: float, end: float, step: float = SCRAPE_SECONDS
) -> list[dict[str, Any]]:
    """Every series `expr` gives over [start, end], as a panel asks for it (`/api/v1/query_range`)."""
    result: list[dict[str, Any]] = api(
        url, "/api/v1/query_range", query=expr, start=start, end=end, step=step
    )["result"]
    return result


def finite_points(series: list[dict[str, Any]]) -> int:
    """How many points of `series` are numbers (a quantile of no requests is NaN: nothing to draw)."""
    return sum(math.isfinite(float(value)) for one in series for _, value in one["values"])


def scraped_since(url: str, moment: float, timeout: float = 30) -> None:
    """Wait until every target has been scraped after `moment`, and the rules evaluated on it."""
    deadline = time.monotonic() + timeout
    while True:
        latest = api(url, "/api/v1/query", query='min(timestamp(up{job="modelserving"}))')["result"]
        groups = api(url, "/api/v1/rules")["groups"]
        evaluated = [_epoch(group["lastEvaluation"]) for group in groups]
        if latest and float(latest[0]["value"][1]) > moment and all(e > moment for e in evaluated):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"no scrape and rule evaluation after {moment} within {timeout} s")
        time.sleep(0.2)


def _epoch(rfc3339: str) -> float:
    """Prometheus's RFC 3339 times (nanoseconds, `Z`) as seconds since the epoch."""
    return datetime.fromisoformat(rfc3339).timestamp()
