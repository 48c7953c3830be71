"""Input drift end to end: the titanic service counts what it is sent into its card's reference
bins, and the recording rule (`model:input_psi:1h`, alerts.rules.yaml) run by promtool on what
the service's own /metrics showed tells a replay of Titanic's passengers from a shifted copy.

The reference is taken, as training takes it (`modelserving.dev.reference`), from half of the
891 passengers (a seeded shuffle), and written into a copy of the committed model's card. The
other half is then replayed through the typed route of the app as served, and, into a second
app, a copy of it shifted: every passenger in third class, every known age 30 years more. Each
app's model_input_rows_total and model_input_reference_ratio samples become series of a pod
(its counters at 0 from load, at the replayed counts from the next minute on), the first in
namespace modelserving-staging, the second in modelserving-prod, and promtool evaluates the
rules file itself on them: the index of each feature, and which features ModelInputDrift fires
for. No Python here computes the index.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from k8s.overlays import promtool
from modelserving import load_model
from modelserving.dev.reference import ReferenceRows, reference_of
from modelserving.dev.testing import started
from modelserving.formats.artifacts import write_card
from titanic import train
from titanic.features import load_training_data
from titanic.main import SERVICE
from titanic.schemas import Passenger

RULES = Path(__file__).resolve().parents[2] / "k8s" / "components" / "environment" / "alerts.rules.yaml"
VERSION = "20261205"
THRESHOLD = 0.2  # the alert's
SCRAPE = 'app_kubernetes_io_part_of="modelserving", app_kubernetes_io_name="titanic", model="titanic"'
SAMPLE = re.compile(r"\{([^{}]*)\} ([-+0-9.eE]+|NaN|[-+]?Inf)")
MINUTES = 90


def halves() -> tuple[list[Passenger], list[Passenger]]:
    frame, _ = load_training_data(train.DATA)
    passengers = train.passengers(frame)
    random.Random(0).shuffle(passengers)
    middle = len(passengers) // 2
    return passengers[:middle], passengers[middle:]


def shifted(passenger: Passenger) -> Passenger:
    age = None if passenger.Age is None else passenger.Age + 30
    return passenger.model_copy(update={"Pclass": 3, "Age": age})


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed model, its card's reference taken from the first half of the passengers."""
    directory = tmp_path_factory.mktemp("model")
    for path in SERVICE.model_dir.iterdir():
        shutil.copy(path, directory)
    committed = load_model(directory, expected_name="titanic", artifact_format=SERVICE.artifact_format)
    reference = reference_of(ReferenceRows(SERVICE, halves()[0], unwatched=train.UNWATCHED), committed)
    write_card(directory, committed.card.model_copy(update={"reference": reference, "version": VERSION}))
    return directory


def replayed(model_dir: Path, passengers: list[Passenger]) -> list[tuple[str, dict[str, str], float]]:
    """`passengers` sent to the app as served, in requests of 1 to 8 rows; then its /metrics'
    input-drift samples: (name, labels, value)."""
    with started(SERVICE, model_dir=model_dir) as client:
        rows = [passenger.model_dump(mode="json") for passenger in passengers]
        sizes = random.Random(1)
        while rows:
            size = sizes.randint(1, 8)
            batch, rows = rows[:size], rows[size:]
            answer = client.predict(batch)
            assert answer.status_code == 200, answer.text
        assert client.app.state.plane.drift.flush()  # type: ignore[attr-defined]
        text = client.get("/metrics").text
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in ("model_input_rows_total", "model_input_reference_ratio")
    ]


def as_series(samples: list[tuple[str, dict[str, str], float]], namespace: str) -> list[dict[str, str]]:
    """A pod's series of `samples`: counters 0 at load, the replayed counts from minute 1 on;
    the reference's shares from load."""
    made = []
    for name, labels, value in samples:
        own = ", ".join(f'{key}="{json.dumps(item)[1:-1]}"' for key, item in labels.items() if key != "model")
        counted = name == "model_input_rows_total"
        made.append(
            {
                "series": f'{name}{{{SCRAPE}, namespace="{namespace}", {own}}}',
                "values": f"0 {value:g}x{MINUTES}" if counted else f"{value:g}x{MINUTES}",
            }
        )
    return made


def promtool_test(
    tmp_path: Path, series: list[dict[str, str]], cases: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, **cases}],
    }
    (tmp_path / "drift.test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    return subprocess.run(
        [promtool(), "test", "rules", "drift.test.yaml"], capture_output=True, text=True, cwd=tmp_path
    )


def indexes(tmp_path: Path, series: list[dict[str, str]]) -> dict[tuple[str, str], float]:
    """model:input_psi:1h by (namespace, feature) at minute 45, as promtool evaluates the rule: read
    from its report on a test expecting no sample (which fails, naming each sample it got)."""
    ran = promtool_test(
        tmp_path,
        series,
        {"promql_expr_test": [{"expr": "model:input_psi:1h", "eval_time": "45m", "exp_samples": []}]},
    )
    got = (ran.stdout + ran.stderr).split("got:", 1)
    assert ran.returncode != 0 and len(got) == 2, ran.stdout + ran.stderr
    found = {}
    for labels, value in SAMPLE.findall(got[1]):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        assert pairs["version"] == VERSION and pairs["model"] == "titanic", labels
        found[(pairs["namespace"], pairs["feature"])] = float(value)
    return found


def test_a_replay_of_the_other_half_stays_low_and_a_shifted_copy_drifts(
    model_dir: Path, tmp_path: Path
) -> None:
    _, other = halves()
    like_training = replayed(model_dir, other)
    drifted = replayed(model_dir, [shifted(passenger) for passenger in other])
    counted = sum(
        value
        for name, labels, value in like_training
        if name == "model_input_rows_total" and labels["feature"] == "Sex"
    )
    assert counted == len(other)  # every replayed row counted once per feature
    series = as_series(like_training, "modelserving-staging") + as_series(drifted, "modelserving-prod")

    psi = indexes(tmp_path, series)
    features = sorted({feature for _, feature in psi})
    print("model:input_psi:1h, as promtool evaluates the recording rule (the other half; shifted):")
    for feature in features:
        staging, prod = psi[("modelserving-staging", feature)], psi[("modelserving-prod", feature)]
        print(f"  {feature:10} {staging:.4f}  {prod:.4f}")
    assert features == ["Age", "Cabin", "Embarked", "Fare", "Parch", "Pclass", "Sex", "SibSp", "Ticket"]
    assert max(psi[("modelserving-staging", feature)] for feature in features) < 0.1  # low: noise alone
    for feature in ("Pclass", "Age"):
        assert psi[("modelserving-prod", feature)] > THRESHOLD, feature
    for feature in set(features) - {"Pclass", "Age"}:  # what the shift left alone scores as before
        assert psi[("modelserving-prod", feature)] == pytest.approx(psi[("modelserving-staging", feature)])

    # The alert, from the rules file: for the shifted copy's class and age, after 30 minutes;
    # never for the replay like training.
    firing = [
        {
            "exp_labels": {
                "severity": "ticket",
                "namespace": "modelserving-prod",
                "app_kubernetes_io_name": "titanic",
                "model": "titanic",
                "version": VERSION,
                "feature": feature,
            },
            "exp_annotations": {
                "summary": f"titanic (modelserving-prod): input {feature} of model version {VERSION} has "
                f"drifted from training (PSI {psi[('modelserving-prod', feature)]:.2f} over the last hour)"
            },
        }
        for feature in ("Age", "Pclass")
    ]
    cases = {
        "alert_rule_test": [
            {"eval_time": "25m", "alertname": "ModelInputDrift", "exp_alerts": []},
            {"eval_time": "45m", "alertname": "ModelInputDrift", "exp_alerts": firing},
        ]
    }
    ran = promtool_test(tmp_path, series, cases)
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_what_counting_titanic_inputs_costs(model_dir: Path) -> None:
    """In-process figures for the docs: what a request pays (`offer`: an append), and what the
    counting thread spends on one row and on 1000 (titanic's 9 watched fields), best of 5."""
    passengers = halves()[1]
    with started(SERVICE, model_dir=model_dir) as client:
        drift = client.app.state.plane.drift  # type: ignore[attr-defined]
        drift.stop(1)  # measured here, not on its thread
        one, thousand = passengers[:1], (passengers * 3)[:1000]

        def best(call: Any, repeat: int) -> float:
            timings = []
            for _ in range(5):
                begun = time.perf_counter()
                for _ in range(repeat):
                    call()
                timings.append((time.perf_counter() - begun) / repeat * 1e6)
            return min(timings)

        drift._max_rows = 10**12  # nothing dropped while timing offers
        offer_one, offer_thousand = best(lambda: drift.offer(one), 10_000), best(
            lambda: drift.offer(thousand), 10_000
        )
        count_one, count_thousand = best(lambda: drift.count(one), 1_000), best(
            lambda: drift.count(thousand), 20
        )
    print(
        f"titanic: a request pays {offer_one:.2f} us (1 row) and {offer_thousand:.2f} us (1000 rows); the "
        f"thread counts a batch of 1 row in {count_one:.0f} us, of 1000 rows in {count_thousand:.0f} us"
    )
    assert offer_one < 5 and offer_thousand < 5
