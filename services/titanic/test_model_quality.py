"""The model is good enough, and the committed artifact is the one training produces."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from modelserving import load_model
from modelserving.artifacts import sha256_of
from modelserving.testing import assert_same_predictions, retrained_and_committed
from titanic import train
from titanic.features import build_pipeline, cross_validated_accuracy, load_training_data
from titanic.main import MODEL_DIR, SERVICE, prepare

MIN_CV_ACCURACY = 0.82


def test_retrained_model_reaches_the_accuracy_bar() -> None:
    frame, survived = load_training_data(train.DATA)
    assert len(frame) == 891
    accuracy = cross_validated_accuracy(
        build_pipeline(train.SEED), frame, survived, folds=5, random_state=train.SEED
    )
    print(f"5-fold CV accuracy: {accuracy:.4f}")
    assert accuracy >= MIN_CV_ACCURACY


def test_committed_model_matches_its_card_and_the_committed_data() -> None:
    committed = load_model(MODEL_DIR, expected_name="titanic", artifact_format=SERVICE.artifact_format)
    assert committed.card.training_data_sha256 == sha256_of(train.DATA.read_bytes())
    assert committed.card.metrics["cv5_accuracy"] >= MIN_CV_ACCURACY


def test_training_is_deterministic_and_reproduces_the_committed_model(tmp_path: Path) -> None:
    retrained, committed = retrained_and_committed(train.main, SERVICE, tmp_path)
    assert retrained.estimator.keys() == committed.estimator.keys()
    for name, array in committed.estimator.items():
        assert_same_predictions(retrained.estimator[name], array, what=name)


def test_served_scores_equal_the_pipelines_on_every_training_passenger() -> None:
    """What serving computes (NumPy features and trees, from the artifact) is the fitted pipeline's answer."""
    frame, survived = load_training_data(train.DATA)
    pipeline = build_pipeline(train.SEED).fit(frame, survived)
    passengers = as_passengers(frame)
    served = prepare(load_model(MODEL_DIR, expected_name="titanic", artifact_format=SERVICE.artifact_format))
    expected = pipeline.predict_proba(frame)[:, 1]
    assert np.abs(served.estimator.scores(passengers) - expected).max() < 1e-12
    # Rows the training data lacks: unseen categories, every gap at once, extreme numbers.
    odd = frame.iloc[:3].copy()
    odd["Sex"] = [None, "female", "male"]
    odd["Embarked"] = ["X", None, "S"]
    odd["Name"] = ["no comma", "Doe, Dr. J", "Roe, Mme. A"]
    odd["Age"] = [None, 0.1, 120]
    odd["Fare"] = [None, 0, 10000]
    odd["Cabin"] = [None, "C85", None]
    odd_scores = served.estimator.scores(as_passengers(odd))
    assert np.abs(odd_scores - pipeline.predict_proba(odd)[:, 1]).max() < 1e-12


def as_passengers(frame: pd.DataFrame) -> list[SimpleNamespace]:
    """Rows as request-like objects: attributes named as the columns, gaps as None."""
    return [
        SimpleNamespace(**{key: None if pd.isna(value) else value for key, value in record.items()})
        for record in frame.to_dict("records")
    ]


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
