"""The model is good enough on flowers it never saw; the committed artifact is what training makes."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from iris import train
from iris.features import load_training_data
from iris.main import SERVICE
from modelserving import load_model
from modelserving.dev.testing import assert_same_predictions, retrained_and_committed
from modelserving.formats.artifacts import sha256_of

MIN_HELD_OUT_ACCURACY = 0.93


def test_held_out_split_keeps_15_flowers_of_each_species_out() -> None:
    train_set, held_out = train.held_out_split(load_training_data())
    assert len(train_set) + len(held_out) == 150
    assert np.bincount(held_out.target).tolist() == [15, 15, 15]


def test_committed_model_reaches_the_accuracy_bar_on_held_out_flowers() -> None:
    _, held_out = train.held_out_split(load_training_data())
    committed = load_model(SERVICE.model_dir, expected_name="iris", artifact_format=SERVICE.artifact_format)
    accuracy = accuracy_score(held_out.target, committed.estimator.predict(held_out.features))
    print(f"held-out accuracy: {accuracy:.4f}")
    assert accuracy >= MIN_HELD_OUT_ACCURACY
    assert committed.card.metrics["holdout_accuracy"] == pytest.approx(accuracy, abs=1e-4)


def test_committed_model_card_names_the_training_data() -> None:
    card = load_model(SERVICE.model_dir, expected_name="iris", artifact_format=SERVICE.artifact_format).card
    assert card.training_data_sha256 == sha256_of(load_training_data().as_csv())


def test_training_is_deterministic_and_reproduces_the_committed_model(tmp_path: Path) -> None:
    retrained, committed = retrained_and_committed(train.main, SERVICE, tmp_path)
    flowers = load_training_data().features
    assert_same_predictions(
        retrained.estimator.predict_proba(flowers), committed.estimator.predict_proba(flowers)
    )
