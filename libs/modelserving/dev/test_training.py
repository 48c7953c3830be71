import csv
import io
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel
from sklearn.datasets import load_iris
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from modelserving import load_model
from modelserving.dev import export
from modelserving.dev.testing import assert_same_predictions, raised
from modelserving.dev.training import (
    Dataset,
    TrainingDataError,
    refused_in_one_line,
    save_and_report,
    table_bytes,
    training_arguments,
)
from modelserving.formats.artifacts import sha256_of
from modelserving.formats.joblib import JOBLIB


def labelled(rows: int) -> Dataset:
    """`rows` examples, half of class 0 and half of class 1, each row holding its own index."""
    features = np.arange(rows * 2, dtype=float).reshape(rows, 2)
    return Dataset(("a", "b"), features, "label", np.arange(rows) % 2)


def test_output_dir_defaults_to_the_services_model_dir() -> None:
    arguments = training_arguments("iris", default_version="2.0.0", usage="Train iris.").parse_args([])
    assert arguments.output_dir == Path("services/iris/model")
    assert arguments.version == "2.0.0"


def test_options_override_the_defaults_and_scripts_may_add_their_own() -> None:
    parser = training_arguments("iris", default_version="2.0.0", usage=None)
    parser.add_argument("--data", type=Path)
    arguments = parser.parse_args(["--output-dir", "/tmp/x", "--version", "2.1.0", "--data", "d.csv"])
    assert (arguments.output_dir, arguments.version, arguments.data) == (
        Path("/tmp/x"),
        "2.1.0",
        Path("d.csv"),
    )


def test_help_shows_the_usage_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        training_arguments("iris", default_version="1.0.0", usage="Train the iris model.").parse_args(
            ["--help"]
        )
    help_text = capsys.readouterr().out
    assert "Train the iris model." in help_text
    assert "services/iris/model" in help_text


def test_save_and_report_writes_a_loadable_model_rounds_metrics_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = training_arguments("toy", default_version="3.1.0", usage=None).parse_args(
        ["--output-dir", str(tmp_path)]
    )
    model = DummyClassifier(strategy="most_frequent").fit([[0], [1], [1]], [0, 1, 1])
    card = save_and_report(
        model,
        arguments,
        name="toy",
        training_data=b"x,y\n",
        metrics={"accuracy": 2 / 3, "rows": 3},
        libraries=("scikit-learn",),
        artifact_format=JOBLIB,
        reference=None,
    )
    loaded = load_model(tmp_path, expected_name="toy", artifact_format=JOBLIB)
    assert loaded.card == card
    assert loaded.card.version == "3.1.0"
    assert loaded.card.metrics == {"accuracy": 0.6667, "rows": 3.0}
    assert loaded.card.training_data_sha256 == sha256_of(b"x,y\n")
    assert loaded.estimator.predict([[5]]).tolist() == [1]
    assert capsys.readouterr().out == f"trained toy 3.1.0 -> {tmp_path}: accuracy 0.6667, rows 3\n"


def test_table_bytes_is_csv_with_exact_floats() -> None:
    data = table_bytes(("x", "name"), [(0.1, "a,b"), (1e-20, "c")])
    assert list(csv.reader(io.StringIO(data.decode()))) == [["x", "name"], ["0.1", "a,b"], ["1e-20", "c"]]


def test_dataset_csv_has_a_header_and_one_line_per_example() -> None:
    lines = labelled(3).as_csv().decode().splitlines()
    assert lines == ["a,b,label", "0.0,1.0,0", "2.0,3.0,1", "4.0,5.0,0"]


def test_dataset_refuses_features_that_do_not_fit_its_columns_and_targets() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        Dataset(("a",), np.zeros((3, 2)), "label", np.zeros(3))
    with pytest.raises(ValueError, match="do not fit"):
        Dataset(("a", "b"), np.zeros((3, 2)), "label", np.zeros(4))


def test_split_is_a_seeded_partition_that_can_keep_class_proportions() -> None:
    data = labelled(20)
    train, held_out = data.split(held_out_fraction=0.25, seed=3, stratify=True)
    assert (len(train), len(held_out)) == (15, 5)
    # Each row holds its own index, so the two parts together must be every row exactly once.
    indexes = np.concatenate([train.features[:, 0], held_out.features[:, 0]]) / 2
    assert sorted(indexes.tolist()) == list(range(20))
    assert (train.target == train.features[:, 0] / 2 % 2).all()  # targets moved with their rows
    assert abs(int(held_out.target.sum()) - 2.5) <= 0.5
    again, _ = data.split(held_out_fraction=0.25, seed=3, stratify=True)
    assert (again.features == train.features).all()
    other_seed, _ = data.split(held_out_fraction=0.25, seed=4, stratify=True)
    assert not (other_seed.features == train.features).all()


def test_cross_validated_scores_with_the_named_scorer() -> None:
    data = labelled(20)
    always_zero = DummyClassifier(strategy="constant", constant=0)
    accuracy = data.cross_validated(always_zero, scoring="accuracy", folds=5, seed=0, stratify=True)
    assert accuracy == pytest.approx(0.5)


def test_retraining_check_admits_rounding_and_catches_a_changed_hyperparameter() -> None:
    flowers = load_iris()
    fitted = LogisticRegression(C=1.0, max_iter=1000).fit(flowers.data, flowers.target)
    probabilities = fitted.predict_proba(flowers.data)
    assert_same_predictions(probabilities * (1 + 1e-9), probabilities)  # another CPU's last bits
    changed = LogisticRegression(C=1.1, max_iter=1000).fit(flowers.data, flowers.target)
    with pytest.raises(AssertionError):
        assert_same_predictions(changed.predict_proba(flowers.data), probabilities)
    with pytest.raises(AssertionError):  # labels and tree structure: exactly
        assert_same_predictions(np.array([0, 1, 2]), np.array([0, 1, 1]))


class Flower(BaseModel):
    petal_length: float
    sepal_width: float


def test_a_dataset_takes_the_schemas_columns_by_name_in_its_order() -> None:
    columns = ["sepal_width", "colour", "petal_length"]
    data = Dataset.for_schema(Flower, columns, [[3.5, 9.0, 1.4], [3.0, 9.0, 5.2]], "species", [0, 2])
    assert data.columns == ("petal_length", "sepal_width")
    assert data.features.tolist() == [[1.4, 3.5], [5.2, 3.0]]


def test_a_misspelt_column_stops_training_in_one_line_naming_the_field() -> None:
    with pytest.raises(TrainingDataError) as caught:
        Dataset.for_schema(Flower, ["petal_lenght", "sepal_width"], [[1.4, 3.5]], "species", [0])
    message = str(caught.value)
    assert "\n" not in message
    assert "'petal_length' (did you mean 'petal_lenght'?)" in message


def test_a_model_that_cannot_be_served_as_arrays_stops_training_in_one_line() -> None:
    data = load_iris()
    fitted = KNeighborsClassifier().fit(data.data, data.target)
    with pytest.raises(SystemExit) as caught, refused_in_one_line("iris"):
        export.checked(fitted, data.data)
    message = str(raised(caught).code)
    assert message.startswith("iris: cannot convert a KNeighborsClassifier: the models that convert are")
    assert "\n" not in message


def test_a_column_the_data_lacks_stops_training_in_one_line_named_after_the_service() -> None:
    with pytest.raises(SystemExit) as caught, refused_in_one_line("iris"):
        Dataset.for_schema(Flower, ["petal_lenght", "sepal_width"], [[1.4, 3.5]], "species", [0])
    assert str(raised(caught).code).startswith("iris: ") and "petal_length" in str(raised(caught).code)
