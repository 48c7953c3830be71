"""The model is good enough, and the committed artifact is the one training produces."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from modelserving import load_model
from modelserving.artifacts import sha256_of
from modelserving.testing import retrained_and_committed
from titanic import train
from titanic.features import SurvivalScorer, build_pipeline, cross_validated_accuracy, load_training_data
from titanic.main import MODEL_DIR, SERVICE

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
    committed = load_model(MODEL_DIR, expected_name="titanic")
    assert committed.card.training_data_sha256 == sha256_of(train.DATA.read_bytes())
    assert committed.card.metrics["cv5_accuracy"] >= MIN_CV_ACCURACY


def test_training_is_deterministic_and_reproduces_the_committed_model(tmp_path: Path) -> None:
    retrained, committed = retrained_and_committed(train.main, SERVICE, tmp_path)
    frame, _ = load_training_data(train.DATA)
    assert (retrained.estimator.predict_proba(frame) == committed.estimator.predict_proba(frame)).all()


def test_served_scores_equal_the_pipelines_on_every_training_passenger() -> None:
    """What serving computes (SurvivalScorer: numpy features, prepared trees) is the pipeline's answer."""
    pipeline = load_model(SERVICE.model_dir, expected_name="titanic").estimator
    frame, _ = load_training_data(train.DATA)
    passengers = [
        SimpleNamespace(**{key: None if pd.isna(value) else value for key, value in record.items()})
        for record in frame.to_dict("records")
    ]
    served = SurvivalScorer(pipeline).scores(passengers)
    expected = pipeline.predict_proba(frame)[:, 1]
    assert np.abs(served - expected).max() < 1e-12
