"""Training's reference distribution: deciles for numbers, the frequent categories for the rest,
unwatched fields left out, and the scores as the service's output bins them."""

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from pydantic import BaseModel, Field

from modelserving import LoadedModel, ModelService, load_model
from modelserving.dev.reference import ReferenceRows, is_number, reference_of
from modelserving.dev.training import TrainingDataError, save_and_report, training_arguments
from modelserving.formats.reference import CategoryBins, NumberBins
from modelserving.outputs import ScoreOutput


class Row(BaseModel):
    id: int = Field(ge=0)
    age: float | None = None
    port: Literal["S", "C", "Q"] | None = None
    name: str = ""
    klass: Literal[1, 2, 3] = 3


class Score(BaseModel):
    score: float


class Scores(BaseModel):
    predictions: list[Score]


def predict(model: LoadedModel, rows: Sequence[Row]) -> Scores:
    return Scores(predictions=[Score(score=(row.age or 0) * model.estimator["w"][0]) for row in rows])


SERVICE = ModelService(
    name="toy",
    model_dir=Path("."),
    predict_path="/p",
    item_type=Row,
    response_type=Scores,
    predict=predict,
    examples=[Row(id=1)],
    output=ScoreOutput("score", edges=(0.5,), tolerance=0.1),
)


def rows(count: int = 1000) -> list[Row]:
    return [
        Row(
            id=index,
            age=None if index % 10 == 0 else float(index % 100),
            port=("S", "S", "C", "Q")[index % 4] if index % 500 else None,
            name=f"passenger {index}",
            klass=(1, 2, 3)[index % 3],
        )
        for index in range(count)
    ]


def test_field_kinds_come_from_the_schema() -> None:
    assert [is_number(field.annotation) for field in Row.model_fields.values()] == [
        True, True, False, False, False,
    ]  # fmt: skip


def test_numbers_get_decile_edges_categories_their_frequent_values_and_scores_the_output_bins() -> None:
    given = ReferenceRows(SERVICE, rows(), unwatched=("id",))
    reference = reference_of(given, LoadedModel({"w": np.array([0.01])}, card=None))  # type: ignore[arg-type]
    assert reference.rows == 1000
    assert list(reference.features) == ["age", "port", "name", "klass"]  # the schema's order, less `id`
    age = reference.features["age"]
    assert isinstance(age, NumberBins)
    assert age.edges == [9, 19, 29, 39, 49, 59, 69, 79, 89]  # the observed values at the deciles
    assert age.shares["missing"] == pytest.approx(0.1)
    assert sum(age.shares.values()) == pytest.approx(1, abs=1e-6)
    port = reference.features["port"]
    assert isinstance(port, CategoryBins)
    assert port.categories == ["S", "C", "Q"]  # the most frequent first
    assert port.shares["missing"] == pytest.approx(0.002)
    name = reference.features["name"]  # free text: no value is frequent enough to be a category
    assert isinstance(name, CategoryBins) and name.categories == []
    assert name.shares == {"other": 1.0, "missing": 0.0}
    assert reference.features["klass"].bins == ("1", "2", "3", "other", "missing")
    assert reference.scores is not None
    assert reference.scores.bins == SERVICE.output.bins  # type: ignore[union-attr]
    assert reference.scores.shares[">=0.5"] == pytest.approx(
        0.45
    )  # ages 51-99, less the missing ones (multiples of 10)


def test_rare_categories_and_those_beyond_the_most_frequent_twenty_are_other() -> None:
    many = [Row(id=i, age=1.0, name=f"n{i % 30}" if i < 900 else f"rare{i}") for i in range(1000)]
    model = LoadedModel({"w": np.ones(1)}, card=None)  # type: ignore[arg-type]
    reference = reference_of(ReferenceRows(SERVICE, many), model)
    name = reference.features["name"]
    assert isinstance(name, CategoryBins)
    assert len(name.categories) == 20  # 30 names with 30 rows each: the first 20 by name
    assert name.shares["other"] == pytest.approx(0.4)  # the other 10 names, and the 100 rare ones


def test_unwatched_must_name_fields_and_rows_there_must_be() -> None:
    with pytest.raises(ValueError, match="no field idd"):
        ReferenceRows(SERVICE, rows(), unwatched=("idd",))
    with pytest.raises(ValueError, match="needs rows"):
        ReferenceRows(SERVICE, [])


def test_save_and_report_writes_the_reference_of_the_model_as_loaded(tmp_path: Path) -> None:
    arguments = training_arguments("toy", default_version="2", usage=None).parse_args(
        ["--output-dir", str(tmp_path)]
    )
    card = save_and_report(
        {"w": np.array([0.01])},
        arguments,
        name="toy",
        training_data=b"",
        metrics={},
        libraries=("numpy",),
        reference=ReferenceRows(SERVICE, rows(), unwatched=("id",)),
    )
    assert card.reference is not None
    assert load_model(tmp_path).card == card


def test_a_numeric_field_with_no_value_stops_training_in_one_line(tmp_path: Path) -> None:
    arguments = training_arguments("toy", default_version="2", usage=None).parse_args(
        ["--output-dir", str(tmp_path)]
    )
    with pytest.raises(TrainingDataError, match="field age: no values"):
        save_and_report(
            {"w": np.ones(1)},
            arguments,
            name="toy",
            training_data=b"",
            metrics={},
            libraries=("numpy",),
            reference=ReferenceRows(SERVICE, [Row(id=1)]),
        )
