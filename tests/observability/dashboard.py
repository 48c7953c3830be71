"""The Grafana dashboard every overlay ships (`k8s/components/environment/dashboard.json`), as the
tests and the screenshot script read it: its panels' queries, with the dashboard's variables
given the values Grafana would give them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Relative to the repo: where tests run (in their sandbox) and `./pants run` runs.
DASHBOARD = Path("k8s/components/environment/dashboard.json")
CONFIG_MAP = "modelserving-dashboard"  # its ConfigMap, and the key Grafana's sidecar writes it to
KEY = "modelserving.json"
DISCOVERY_LABEL = ("grafana_dashboard", "1")
# Grafana's own variable; the others are the dashboard's (its `templating`).
RATE_INTERVAL = "__rate_interval"
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


@dataclass(frozen=True)
class Query:
    """One query of one panel, as the dashboard holds it."""

    panel: str
    legend: str
    expr: str

    def variables(self) -> set[str]:
        return {a or b for a, b in VARIABLE.findall(self.expr)}

    def with_values(self, values: dict[str, str]) -> str:
        """The query as Grafana sends it, every variable replaced by `values` (a missing one fails)."""
        missing = self.variables() - values.keys()
        if missing:
            raise KeyError(f"{self.panel}: no value for {sorted(missing)} in {self.expr}")
        return VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], self.expr)

    @property
    def name(self) -> str:
        """`panel: legend`, which tells a panel's queries apart."""
        return f"{self.panel}: {self.legend}"


def values(namespace: str, service: str, scrape_seconds: float) -> dict[str, str]:
    """The dashboard's variables as Grafana fills them for `service` in `namespace`, scraped every
    `scrape_seconds`: $__rate_interval is then four scrapes."""
    return {"namespace": namespace, "service": service, RATE_INTERVAL: f"{4 * scrape_seconds:g}s"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The panels that draw something (rows only group them)."""
    return [panel for panel in (board or dashboard())["panels"] if panel["type"] != "row"]


def queries(board: dict[str, Any] | None = None) -> list[Query]:
    return [
        Query(panel["title"], target["legendFormat"], target["expr"])
        for panel in panels(board)
        for target in panel["targets"]
    ]


def variable_names(board: dict[str, Any] | None = None) -> set[str]:
    return {variable["name"] for variable in (board or dashboard())["templating"]["list"]}
