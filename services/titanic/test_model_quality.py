"""The model is chosen honestly, beats the baselines, is what serving computes, and is reproducible."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelserving import load_model
from modelserving.dev.testing import assert_same_predictions, retrained_and_committed, yield_the_cpu
from modelserving.formats.artifacts import sha256_of
from titanic import train
from titanic.features import (
    BASELINE,
    CANDIDATES,
    FOLDS,
    REPEATS,
    Candidate,
    Result,
    load_training_data,
    passenger_records,
    simplest_within_one_standard_error,
    survival_scorer,
)
from titanic.main import MODEL_DIR, SERVICE

yield_the_cpu()  # this module retrains every candidate on 10 x 5 folds

MIN_CV_ACCURACY = 0.83


def test_training_uses_only_the_891_labelled_passengers() -> None:
    """The full 1,309-passenger list some packages ship labels the public test passengers too."""
    frame, survived = load_training_data(train.DATA)
    assert len(frame) == len(survived) == 891
    assert frame["PassengerId"].tolist() == list(range(1, 892))


def test_training_is_deterministic_and_the_chosen_model_beats_the_baseline(tmp_path: Path) -> None:
    """Retrain (the whole comparison); the committed card's every figure must come out again."""
    retrained, committed = retrained_and_committed(train.main, SERVICE, tmp_path)
    assert retrained.estimator.keys() == committed.estimator.keys()
    for name, array in committed.estimator.items():
        if array.dtype.kind in "US":  # the JSON of the encoding and of the model kind
            assert str(retrained.estimator[name]) == str(array), name
        else:
            assert_same_predictions(retrained.estimator[name], array, what=name)
    metrics = retrained.card.metrics
    baseline, sd = metrics[f"cv_accuracy[{BASELINE}]"], metrics[f"cv_accuracy_sd[{BASELINE}]"]
    print(f"chosen: {metrics['cv_accuracy']:.4f}; {BASELINE}: {baseline:.4f} ± {sd:.4f}")
    assert metrics["cv_accuracy"] >= MIN_CV_ACCURACY
    assert metrics["cv_accuracy"] > baseline + sd


def test_the_committed_card_lists_every_candidate_and_the_data() -> None:
    card = load_model(MODEL_DIR, expected_name="titanic", artifact_format=SERVICE.artifact_format).card
    assert card.training_data_sha256 == sha256_of(train.DATA.read_bytes())
    for candidate in CANDIDATES:
        assert f"cv_accuracy[{candidate.name}]" in card.metrics
        assert f"cv_accuracy_sd[{candidate.name}]" in card.metrics
    means = {candidate.name: card.metrics[f"cv_accuracy[{candidate.name}]"] for candidate in CANDIDATES}
    best = max(means, key=means.__getitem__)
    standard_error = card.metrics[f"cv_accuracy_sd[{best}]"] / np.sqrt(FOLDS * REPEATS)
    assert means[best] - card.metrics["cv_accuracy"] <= standard_error + 1e-4  # cards round to 4 places


def result(name: str, mean: float, sd: float, parameters: int) -> Result:
    # 50 accuracies with exactly this mean and sd (ddof=1): +-a alternating around the mean.
    spread = sd * np.sqrt(49 / 50)
    return Result(name, mean + spread * np.tile([1.0, -1.0], 25), parameters)


def test_the_simplest_candidate_within_one_standard_error_of_the_best_is_chosen() -> None:
    best = result("big", 0.850, 0.003 * np.sqrt(50), 5000)
    within = result("small", 0.8471, 0.02, 20)
    outside = result("tiny", 0.8469, 0.02, 2)
    assert best.standard_error == pytest.approx(0.003)
    assert simplest_within_one_standard_error([best, within, outside]).name == "small"
    assert simplest_within_one_standard_error([best, outside]).name == "big"


@pytest.mark.parametrize("candidate", CANDIDATES, ids=[candidate.name for candidate in CANDIDATES])
def test_every_candidate_serves_exactly_what_its_pipeline_predicts(
    candidate: Candidate, odd_passengers: pd.DataFrame
) -> None:
    """What serving computes (NumPy features and model, from the arrays) is the fitted pipeline's
    answer, on every training passenger and on rows the training data lacks."""
    frame, survived = load_training_data(train.DATA)
    pipeline = candidate.build(train.SEED).fit(frame, survived)
    scorer = survival_scorer(pipeline)
    served = type(scorer).from_arrays(scorer.to_arrays())
    assert np.abs(served.scores(passenger_records(frame)) - pipeline.predict_proba(frame)[:, 1]).max() < 1e-12
    odd_scores = served.scores(passenger_records(odd_passengers))
    assert np.abs(odd_scores - pipeline.predict_proba(odd_passengers)[:, 1]).max() < 1e-12


def test_a_passenger_is_not_described_by_their_own_outcome() -> None:
    """Group features count the other passengers of a group: the same passenger sent with another
    id sees their own training outcome too, and only then."""
    frame, survived = load_training_data(train.DATA)
    encoding = CANDIDATES[-1].build(train.SEED).fit(frame, survived).named_steps["features"].encoding_
    # Mrs. Cumings (id 2, lived) is the only woman on ticket PC 17599 and of her family in 1st class.
    cumings = passenger_records(frame[frame["PassengerId"] == 2])[0]
    assert encoding.group_features(cumings) == [0.0, 0.5, 0.0, 0.0]
    stranger = cumings._replace(PassengerId=9999)
    assert encoding.group_features(stranger) == [1.0, 1.0, 0.0, 1.0]


def test_serving_imports_neither_scikit_learn_nor_pandas() -> None:
    """The service loads and scores with NumPy alone (start-up time; a smaller attack surface)."""
    script = (
        "import sys; from modelserving import load_model; from titanic.main import SERVICE, prepare;"
        " model = prepare(load_model(SERVICE.model_dir, artifact_format=SERVICE.artifact_format));"
        " model.estimator.scores(SERVICE.examples);"
        " print(sorted(m for m in ('sklearn', 'pandas', 'scipy', 'joblib') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
