"""The XGBoost artifact format: a round trip, and no pickle anywhere."""

from pathlib import Path

import pytest

from diabetes.artifact import XGBOOST_UBJ
from diabetes.main import SERVICE
from modelserving import ModelLoadError, load_model
from modelserving.formats.artifacts import sha256_of


def test_committed_artifact_is_ubjson_not_a_pickle() -> None:
    payload = (SERVICE.model_dir / XGBOOST_UBJ.filename).read_bytes()
    assert payload.startswith(b"{")  # a UBJSON object; a pickle would start with b"\x80"
    assert b"learner" in payload


def test_round_trip_keeps_the_trees_and_feature_names() -> None:
    booster = load_model(SERVICE.model_dir, artifact_format=XGBOOST_UBJ).estimator
    again = XGBOOST_UBJ.load(XGBOOST_UBJ.dump(booster))
    assert (
        again.feature_names
        == booster.feature_names
        == ["age", "sex", "bmi", "bp", *[f"s{i}" for i in range(1, 7)]]
    )
    assert again.get_dump() == booster.get_dump()


def test_bytes_that_are_not_a_model_fail_to_load_cleanly(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    card = (SERVICE.model_dir / "model_card.json").read_text()
    garbage = b"{not a model"
    (model_dir / "model.ubj").write_bytes(garbage)
    committed_sha = load_model(SERVICE.model_dir, artifact_format=XGBOOST_UBJ).card.artifact_sha256
    (model_dir / "model_card.json").write_text(card.replace(committed_sha, sha256_of(garbage)))
    with pytest.raises(ModelLoadError, match="cannot be loaded"):
        load_model(model_dir, artifact_format=XGBOOST_UBJ)
