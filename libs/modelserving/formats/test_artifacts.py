import functools
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from modelserving import ArtifactFormat, ModelLoadError, save_model
from modelserving.formats.artifacts import CARD_FILE, load_model, sha256_of
from modelserving.formats.joblib import JOBLIB

# The toy model (conftest.py) is a pickle.
load_pickled = functools.partial(load_model, artifact_format=JOBLIB)


def rewrite_card(model_dir: Path, **changes: object) -> None:
    card = json.loads((model_dir / CARD_FILE).read_text())
    card.update(changes)
    (model_dir / CARD_FILE).write_text(json.dumps(card))


def test_round_trip_keeps_the_model_and_card(model_dir: Path) -> None:
    loaded = load_pickled(model_dir, expected_name="toy")
    assert loaded.estimator.factor == 3.0
    assert loaded.card.version == "7.1"
    assert loaded.card.training_data_sha256 == sha256_of(b"x\n1\n")
    assert loaded.card.artifact_sha256 == sha256_of((model_dir / "model.joblib").read_bytes())
    assert set(loaded.card.library_versions) == {"joblib"}


def test_tampered_artifact_is_refused_before_unpickling(model_dir: Path) -> None:
    artifact = model_dir / "model.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    with pytest.raises(ModelLoadError, match="sha256"):
        load_pickled(model_dir)


def test_truncated_artifact_is_refused(model_dir: Path) -> None:
    artifact = model_dir / "model.joblib"
    artifact.write_bytes(artifact.read_bytes()[:20])
    with pytest.raises(ModelLoadError, match="sha256"):
        load_pickled(model_dir)


def test_corrupt_artifact_with_matching_hash_fails_cleanly(model_dir: Path) -> None:
    garbage = b"this is not a pickle"
    (model_dir / "model.joblib").write_bytes(garbage)
    rewrite_card(model_dir, artifact_sha256=sha256_of(garbage))
    with pytest.raises(ModelLoadError, match="cannot be loaded"):
        load_pickled(model_dir)


def test_missing_artifact(model_dir: Path) -> None:
    (model_dir / "model.joblib").unlink()
    with pytest.raises(ModelLoadError, match="artifact not found"):
        load_pickled(model_dir)


def test_missing_card(model_dir: Path) -> None:
    (model_dir / CARD_FILE).unlink()
    with pytest.raises(ModelLoadError, match="card not found"):
        load_pickled(model_dir)


@pytest.mark.parametrize(
    ("change", "named"),
    [({"artifact_sha256": "abc"}, "artifact_sha256"), ({"metrics": "high"}, "metrics")],
)
def test_invalid_card_names_the_field(model_dir: Path, change: dict[str, object], named: str) -> None:
    rewrite_card(model_dir, **change)
    with pytest.raises(ModelLoadError, match=named):
        load_pickled(model_dir)


def test_card_that_is_not_json(model_dir: Path) -> None:
    (model_dir / CARD_FILE).write_text("{not json")
    with pytest.raises(ModelLoadError, match="invalid model card"):
        load_pickled(model_dir)


def test_card_for_another_model(model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="'toy', not 'iris'"):
        load_pickled(model_dir, expected_name="iris")


def test_a_pickle_loads_only_under_the_exact_library_versions_it_was_saved_with(model_dir: Path) -> None:
    installed = version("joblib")
    major, _, rest = installed.partition(".")
    rewrite_card(model_dir, library_versions={"joblib": f"{major}.{rest}.post9"})  # the same major version
    with pytest.raises(ModelLoadError, match=f"a pickle saved with joblib {installed}.post9: it loads only"):
        load_pickled(model_dir)
    rewrite_card(model_dir, library_versions={"joblib": installed})
    assert load_pickled(model_dir).card.library_versions == {"joblib": installed}


def test_arrays_load_under_another_minor_version_of_their_library(tmp_path: Path) -> None:
    save_model(
        {"w": np.ones(2)},
        tmp_path,
        name="toy",
        version="1",
        training_data=b"x",
        metrics={},
        libraries=("numpy",),
    )
    major = version("numpy").split(".")[0]
    rewrite_card(tmp_path, library_versions={"numpy": f"{major}.0.0"})
    assert load_model(tmp_path).estimator["w"].tolist() == [1.0, 1.0]
    rewrite_card(tmp_path, library_versions={"numpy": "0.1"})
    with pytest.raises(ModelLoadError, match="trained with numpy 0.1, incompatible"):
        load_model(tmp_path)


def test_errors_are_one_line(model_dir: Path) -> None:
    (model_dir / CARD_FILE).write_text('{"name": 1}')
    with pytest.raises(ModelLoadError) as caught:
        load_pickled(model_dir)
    assert "\n" not in str(caught.value)


def test_artifact_of_another_format_is_refused(model_dir: Path) -> None:
    other = ArtifactFormat("xgboost-ubj", "model.ubj", dump=bytes, load=bytes)
    with pytest.raises(ModelLoadError, match="joblib artifact, not xgboost-ubj"):
        load_model(model_dir, artifact_format=other)


def test_a_pickle_is_not_loaded_as_the_default_npz(model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="joblib artifact, not npz"):
        load_model(model_dir)


def test_the_library_imports_joblib_only_for_the_joblib_format() -> None:
    script = "import sys, modelserving; print('joblib' in sys.modules)"
    imported = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert imported.stdout == "False\n"
