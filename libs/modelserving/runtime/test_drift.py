"""Input drift: live rows counted into the card's reference bins on a thread of their own, every
bin's series there from load, labels from the card alone, a full backlog dropping (counted), and
what a request pays for it."""

import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from modelserving import ModelLoadError, ModelService, Settings
from modelserving.formats.artifacts import CARD_FILE
from modelserving.formats.reference import CategoryBins, NumberBins, Reference, ScoreShares
from modelserving.outputs import ScoreOutput
from modelserving.runtime.drift import InputDrift
from modelserving.runtime.metrics import Metrics
from modelserving.server.app import create_app

X = NumberBins(edges=[0, 10], shares={"<0": 0.1, "0-10": 0.5, ">=10": 0.4, "missing": 0.0})
PORT = CategoryBins(categories=["S", "C"], shares={"S": 0.6, "C": 0.3, "other": 0.1, "missing": 0.0})
SCORES = ScoreShares(shares={"<10": 0.5, ">=10": 0.5})
REFERENCE = Reference(rows=10, features={"x": X, "port": PORT}, scores=SCORES)


class Passenger(BaseModel):
    x: float | None = None
    port: str | None = None
    name: str = ""


def series(metrics: Metrics, name: str) -> dict[tuple[str, ...], float]:
    """`name`'s samples by their label values (model, version, feature, bin)."""
    order = ("model", "version", "feature", "bin")
    return {
        tuple(sample.labels[key] for key in order if key in sample.labels): sample.value
        for family in text_string_to_metric_families(metrics.exposition()[0].decode())
        for sample in family.samples
        if sample.name == name
    }


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def test_every_bin_is_made_at_zero_and_every_reference_share_exported_at_load(metrics: Metrics) -> None:
    InputDrift(metrics, "toy", "3", REFERENCE, ScoreOutput("value", edges=(10,), tolerance=0))
    rows = series(metrics, "model_input_rows_total")
    assert rows == {
        ("toy", "3", feature, label): 0.0
        for feature in ("x", "port")
        for label in REFERENCE.features[feature].bins
    }
    assert series(metrics, "model_input_reference_ratio") == {
        ("toy", "3", "x", "<0"): 0.1,
        ("toy", "3", "x", "0-10"): 0.5,
        ("toy", "3", "x", ">=10"): 0.4,
        ("toy", "3", "x", "missing"): 0.0,
        ("toy", "3", "port", "S"): 0.6,
        ("toy", "3", "port", "C"): 0.3,
        ("toy", "3", "port", "other"): 0.1,
        ("toy", "3", "port", "missing"): 0.0,
    }
    assert series(metrics, "model_output_reference_ratio") == {
        ("toy", "3", "<10"): 0.5,
        ("toy", "3", ">=10"): 0.5,
    }


def test_score_shares_binned_otherwise_than_the_served_output_are_not_exported(
    metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    InputDrift(metrics, "toy", "3", REFERENCE, ScoreOutput("value", edges=(5,), tolerance=0))
    assert series(metrics, "model_output_reference_ratio") == {}
    assert "score bins are not the service's output bins" in caplog.text


def test_rows_are_counted_into_the_cards_bins_whatever_they_hold(metrics: Metrics) -> None:
    drift = InputDrift(metrics, "toy", "3", REFERENCE)
    drift.count(
        [
            Passenger(x=-1e9, port="S"),
            Passenger(x=5, port="Q"),
            Passenger(x=10, port="a port no one has heard of"),
            Passenger(x=None, port=None),
            Passenger(x=1e12, port="C"),
        ]
    )
    counted = {key[2:]: value for key, value in series(metrics, "model_input_rows_total").items() if value}
    assert counted == {
        ("x", "<0"): 1,
        ("x", "0-10"): 1,
        ("x", ">=10"): 2,
        ("x", "missing"): 1,
        ("port", "S"): 1,
        ("port", "other"): 2,
        ("port", "missing"): 1,
        ("port", "C"): 1,
    }
    assert len(series(metrics, "model_input_rows_total")) == 8  # no label but the card's


def test_a_single_watched_feature_is_counted_too(metrics: Metrics) -> None:
    drift = InputDrift(metrics, "toy", "3", Reference(rows=1, features={"port": PORT}))
    drift.count([Passenger(port="C"), Passenger(port="C")])
    assert series(metrics, "model_input_rows_total")[("toy", "3", "port", "C")] == 2


def test_the_thread_counts_what_requests_hand_over(metrics: Metrics) -> None:
    drift = InputDrift(metrics, "toy", "3", REFERENCE, interval=0.05)
    drift.start()
    for _ in range(100):
        drift.offer([Passenger(x=1, port="S"), Passenger(x=20, port="C")])
    assert drift.flush()
    assert drift.backlog == 0
    counted = series(metrics, "model_input_rows_total")
    assert counted[("toy", "3", "x", "0-10")] == counted[("toy", "3", "x", ">=10")] == 100
    drift.offer([Passenger(x=-5)])
    drift.stop(timeout=5)  # what is left is counted before the thread ends
    assert series(metrics, "model_input_rows_total")[("toy", "3", "x", "<0")] == 1


def test_a_full_backlog_drops_rows_and_counts_them(metrics: Metrics) -> None:
    drift = InputDrift(metrics, "toy", "3", REFERENCE, max_rows=10)  # not started: nothing is taken
    for _ in range(3):
        drift.offer([Passenger(x=1)] * 4)
    assert drift.backlog == 8
    assert series(metrics, "model_input_rows_dropped_total") == {("toy", "3"): 4}
    drift.offer([Passenger(x=1)] * 2)
    assert drift.backlog == 10


def test_a_failure_to_count_drops_that_batch_and_the_thread_goes_on(
    metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    drift = InputDrift(metrics, "toy", "3", REFERENCE, interval=0.01)
    drift.start()
    drift.offer([object()])  # no field of the reference's
    assert drift.flush()
    assert series(metrics, "model_input_rows_dropped_total") == {("toy", "3"): 1}
    assert "input drift: counting failed" in caplog.text
    drift.offer([Passenger(x=1)])
    assert drift.flush()
    assert series(metrics, "model_input_rows_total")[("toy", "3", "x", "0-10")] == 1
    drift.stop(1)


def per_call_microseconds(call: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            call()
        best = min(best, (time.perf_counter() - started) / repeat * 1e6)
    return best


def test_what_a_request_pays_and_what_the_thread_does(metrics: Metrics) -> None:
    """The request path's cost is one `offer`, whatever its rows; the binning is the thread's.
    Printed: the figures docs/operations.md quotes (best of 5 rounds)."""
    drift = InputDrift(metrics, "toy", "3", REFERENCE, max_rows=10**9)
    one, thousand = [Passenger(x=1, port="S")], [Passenger(x=i % 20, port="SCQ"[i % 3]) for i in range(1000)]
    offer_one = per_call_microseconds(lambda: drift.offer(one), 20_000)
    offer_thousand = per_call_microseconds(lambda: drift.offer(thousand), 20_000)
    count_one = per_call_microseconds(lambda: drift.count(one), 2_000)
    count_thousand = per_call_microseconds(lambda: drift.count(thousand), 50)
    print(
        f"offer: {offer_one:.2f} us for 1 row, {offer_thousand:.2f} us for 1000 rows; "
        f"counting (the thread): {count_one:.1f} us for 1 row, {count_thousand:.0f} us for 1000 rows"
    )
    assert offer_one < 5 and offer_thousand < 5  # an append, whatever the rows (about 0.3 us)
    assert count_thousand < 20_000


# The data plane: a card with a reference gets its inputs counted; one without, none (a warning);
# one whose reference names a field the rows lack does not start.


@pytest.fixture
def card_with(model_dir: Path) -> Iterator[Any]:
    def write(reference: dict[str, Any] | None) -> None:
        card = json.loads((model_dir / CARD_FILE).read_text())
        card.pop("reference", None)
        if reference is not None:
            card["reference"] = reference
        (model_dir / CARD_FILE).write_text(json.dumps(card))

    yield write


def toy_reference(feature: str = "x") -> dict[str, Any]:
    return Reference(rows=4, features={feature: X}, scores=SCORES).model_dump(mode="json")


def test_the_service_counts_the_rows_it_predicts(toy_service: ModelService[Any, Any], card_with: Any) -> None:
    card_with(toy_reference())
    service = dataclasses.replace(toy_service, output=ScoreOutput("value", edges=(10,), tolerance=1))
    with TestClient(create_app(service, Settings())) as client:
        plane = client.app.state.plane  # type: ignore[attr-defined]
        assert series(plane.metrics, "model_input_rows_total") == {
            ("toy", "7.1", "x", label): 0 for label in X.bins
        }
        assert client.post("/scale", json=[{"x": -3}, {"x": 3}, {"x": 30}]).status_code == 200
        assert client.post("/scale", json=[{"x": 500}]).status_code == 200
        assert client.post("/scale", json=[{"x": "not a number"}]).status_code == 422  # never predicted
        assert plane.drift.flush()
        counted = series(plane.metrics, "model_input_rows_total")
        assert counted == {
            ("toy", "7.1", "x", "<0"): 1,
            ("toy", "7.1", "x", "0-10"): 1,
            ("toy", "7.1", "x", ">=10"): 2,
            ("toy", "7.1", "x", "missing"): 0,
        }
        text = client.get("/metrics").text
        assert 'model_input_reference_ratio{bin="0-10",feature="x",model="toy",version="7.1"} 0.5' in text
        assert 'model_output_reference_ratio{bin=">=10",model="toy",version="7.1"} 0.5' in text


def test_a_card_without_a_reference_serves_and_counts_nothing(
    toy_service: ModelService[Any, Any], card_with: Any, caplog: pytest.LogCaptureFixture
) -> None:
    card_with(None)
    with caplog.at_level(logging.WARNING, logger="modelserving"), TestClient(
        create_app(toy_service, Settings())
    ) as client:
        assert client.post("/scale", json=[{"x": 1}]).status_code == 200
        samples = [line for line in client.get("/metrics").text.splitlines() if not line.startswith("#")]
        assert not [line for line in samples if line.startswith(("model_input_", "model_output_reference"))]
    assert "the model card has no reference distribution" in caplog.text


def test_a_reference_naming_a_field_the_rows_lack_stops_start_up(
    toy_service: ModelService[Any, Any], card_with: Any
) -> None:
    card_with(toy_reference(feature="age"))
    with (
        pytest.raises(ModelLoadError, match="reference distribution names fields Row does not have: age"),
        TestClient(create_app(toy_service, Settings())),
    ):
        pass
