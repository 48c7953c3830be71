"""What an operator sees during a benchmark run: the Grafana dashboard's queries (the one every
overlay ships, k8s/components/environment/dashboard.json), drawn by Prometheus's own graph page
in Chromium, as the README's picture (docs/dashboard.png).

    ./pants run bench:dashboard                 # about 4 minutes; rewrites docs/dashboard.png
    ./pants run bench:dashboard -- --seconds 10 --output dist/dashboard.png   # a quick look

Titanic's PEX runs twice, as in a canary's shadow step: a primary, which mirrors 5 % of its typed
requests to a candidate (SHADOW_URL, SHADOW_SAMPLE_RATE as staging and prod set them) and admits
at most 32 inference requests at once. Debian's Prometheus scrapes both every second, with the
labels a Kubernetes scrape gives the pods, and evaluates the project's rules. The benchmark's own
Titanic scenarios drive the primary in turn, each for `--seconds` (wrk over REST, h2load over
gRPC, the benchmark's pinning), the last of them past the primary's limit (batches of 100 rows
on 64 connections), while invalid requests trickle in over both transports. Then each panel's
queries, joined into one expression per panel, are drawn over the whole run on Prometheus's
classic graph page (Debian's build has no other) in Debian's Chromium, driven by Playwright,
laid out four panels to a row.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

import grpc
from bench_report import GRPC_1, TITANIC_1
from benchmark import MODEL_INFER, SCENARIOS, h2load, pinned, running, wrk
from inference_grpc import grpc_predict_v2_pb2 as pb  # pants: no-infer-dep (compiled in the build)
from observability import traffic
from observability.dashboard import dashboard, panels, queries, values
from observability.prometheus import SCRAPE_SECONDS, Target, pod_labels, running_prometheus, scraped_since
from playwright.sync_api import sync_playwright

from titanic.main import SERVICE

NAMESPACE = "modelserving-bench"
PEX = Path("dist/services.titanic/serve.pex")
CHROMIUM = "/usr/bin/chromium"
VALUES = values(NAMESPACE, "titanic", SCRAPE_SECONDS)
PRIMARY = {"SHADOW_SAMPLE_RATE": "0.05", "MAX_CONCURRENT_REQUESTS": "32", "ALLOW_UNAUTHENTICATED": "true"}
CANDIDATE = {"ALLOW_UNAUTHENTICATED": "true"}
# The benchmark's Titanic scenarios, by name, and the concurrency each runs at here.
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}
PHASES = [
    (BY_NAME[TITANIC_1], 1),
    (BY_NAME[TITANIC_1], 16),
    (BY_NAME["titanic, batch of 100"], 16),
    (BY_NAME["titanic, v2 infer, 1 row"], 16),
    (BY_NAME[GRPC_1], 16),
    # Past the limit: refusals. (Bodies of 1000 rows on 64 connections would keep the one core
    # too busy to answer Prometheus's scrapes within their second.)
    (BY_NAME["titanic, batch of 100"], 64),
]


def panel_expressions() -> list[tuple[str, str]]:
    """(title, expression) per panel: its queries, variables given values, each labelled by its
    legend (`query`) and joined with `or`, since the graph page draws one expression per graph."""
    board = dashboard()
    drawn = []
    for panel in panels(board):
        own = [query for query in queries(board) if query.panel == panel["title"]]
        if len(own) == 1:
            drawn.append((panel["title"], own[0].with_values(VALUES)))
            continue
        labelled = [
            f'label_replace({query.with_values(VALUES)}, "query", "{query.legend}", "", "")' for query in own
        ]
        drawn.append((panel["title"], " or ".join(labelled)))
    return drawn


# Before the page draws its graphs (they take their size as they are made): four to a row, the
# page's controls hidden.
LAYOUT = """
document.addEventListener("DOMContentLoaded", () => {
  const style = document.createElement("style");
  style.textContent = `
    #graph_container { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 0 12px; }
    #graph_container > .clearfix, .navbar, .execute_btn, .expression_select, a[name=remove],
      .nav-tabs, .eval_stats, .spinner, #add_graph, .prometheus_input_group, .input, .stacked_btn,
      .btn { display: none !important; }
    .graph_wrapper { overflow: hidden; margin-top: 4px; }
    .graph { min-height: 200px !important; }
    .graph_container .rickshaw_legend { font-size: 9px; padding: 2px 6px; }
    .graph_container .rickshaw_legend .line { line-height: 11px; }
    .graph_wrapper h5 { margin: 8px 0 2px; font-weight: bold; }
    .expression_input { font-size: 10px; max-height: 4.6em; overflow: hidden; }
  `;
  document.head.append(style);
});
"""


# One of the page's own graphs per panel, in the dashboard's order: made by the page's script, as
# its "Add Graph" button does (its URL parameters cannot name more than ten graphs).
ADD_GRAPHS = """
([graphs, range, end, step]) => {
$("#graph_container .graph_wrapper").remove();  // the empty graph the page opens with
graphs.forEach(([title, expr]) => {
  const graph = new Prometheus.Graph($("#graph_container"),
    {expr: expr, tab: 0, range_input: range, end_input: end, step_input: step}, () => {}, () => {});
  const heading = document.createElement("h5");
  heading.textContent = title;
  graph.graphHTML[0].prepend(heading);
});
}
"""


def screenshot(prometheus: str, drawn: list[tuple[str, str]], start: float, end: float, output: Path) -> None:
    """Prometheus's classic graph page (Debian's build has no other) with the panels over [start, end]."""
    seconds = f"{round(end - start)}s"
    end_input = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%d %H:%M")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.add_init_script(LAYOUT)
        page.goto(f"{prometheus}/classic/graph")
        page.wait_for_load_state("networkidle")
        page.evaluate(ADD_GRAPHS, [drawn, seconds, end_input, str(SCRAPE_SECONDS)])
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(3000)  # the graphs are drawn after their answers arrive
        output.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=output, full_page=True)
        browser.close()
    print(f"{output}: {output.stat().st_size // 1024} kB")


# A ModelInfer call naming an input Titanic does not have: INVALID_ARGUMENT.
INVALID_CALL = pb.ModelInferRequest(
    model_name="titanic",
    inputs=[
        pb.ModelInferRequest.InferInputTensor(
            name="no_such_input",
            datatype="FP64",
            shape=[1],
            contents=pb.InferTensorContents(fp64_contents=[1.0]),
        )
    ],
).SerializeToString()


def invalid_grpc_calls(address: str, calls: int) -> None:
    """`calls` invalid ModelInfer calls; their INVALID_ARGUMENT is what they are for."""
    with grpc.insecure_channel(address) as channel:
        infer = channel.unary_unary(MODEL_INFER)
        for _ in range(calls):
            with suppress(grpc.RpcError):
                infer(INVALID_CALL, timeout=10)


@contextmanager
def trickling_errors(url: str, grpc_address: str) -> Iterator[None]:
    """Invalid requests over both transports, a few a second, until the block ends."""
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            traffic.rest(SERVICE, url, 2)
            invalid_grpc_calls(grpc_address, 2)
            stop.wait(0.5)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=25, help="seconds of each benchmark scenario")
    parser.add_argument("--output", type=Path, default=Path("docs/dashboard.png"))
    parser.add_argument("--no-package", action="store_true", help="use titanic's PEX already in dist/")
    arguments = parser.parse_args(argv)
    if not arguments.no_package:
        env = {**os.environ, "PANTS_CONCURRENT": "True"}
        subprocess.run(["./pants", "package", "services/titanic:serve"], env=env, check=True)
    drawn = panel_expressions()
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        candidate = stack.enter_context(running(PEX, 1, True, scratch, CANDIDATE))
        primary = stack.enter_context(running(PEX, 1, True, scratch, {**PRIMARY, "SHADOW_URL": candidate[0]}))
        targets = [
            Target(
                primary[0].removeprefix("http://"), pod_labels("titanic", NAMESPACE, "titanic-model-stable")
            ),
            Target(
                candidate[0].removeprefix("http://"), pod_labels("titanic", NAMESPACE, "titanic-model-canary")
            ),
        ]
        (scratch / "prometheus").mkdir()
        prometheus = stack.enter_context(running_prometheus(scratch / "prometheus", targets))
        print(f"prometheus at {prometheus}; primary {primary[0]}, candidate {candidate[0]}", flush=True)
        start = time.time()
        scraped_since(prometheus, start)
        with trickling_errors(primary[0], primary[3].removeprefix("http://")):
            for scenario, concurrency in PHASES:
                pin = pinned(1)
                if scenario.grpc:
                    figures = h2load(primary[3], scenario, concurrency, arguments.seconds, scratch, pin)
                else:
                    figures = wrk(primary[0], scenario, concurrency, arguments.seconds, scratch, pin)
                print(f"{scenario.name} at c{concurrency}: {figures}", flush=True)
            # The page's end time has whole minutes only: the run goes on, idle but for the
            # trickle, to the next one, so that the graphs end with it.
            end = math.ceil(time.time() / 60) * 60
            time.sleep(max(0.0, end - time.time()))
        scraped_since(prometheus, end)
        screenshot(prometheus, drawn, start, end, arguments.output)


if __name__ == "__main__":
    main()
