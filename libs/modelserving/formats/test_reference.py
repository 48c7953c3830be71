"""The card's reference distribution: how values are binned, what a card must hold, and what an
old card (written before #28, without one) does."""

import json
from pathlib import Path

import numpy as np
import pytest

from modelserving import ModelLoadError, load_model, save_model
from modelserving.formats.artifacts import CARD_FILE, read_card
from modelserving.formats.reference import (
    MISSING,
    OTHER,
    CategoryBins,
    NumberBins,
    Reference,
    ScoreShares,
    column,
)

AGE = NumberBins(
    edges=[10, 20, 40],
    shares={"<10": 0.1, "10-20": 0.2, "20-40": 0.3, ">=40": 0.3, "missing": 0.1},
)
PORT = CategoryBins(categories=["S", "C"], shares={"S": 0.7, "C": 0.2, "other": 0.0, "missing": 0.1})
REFERENCE = Reference(
    rows=10, features={"Age": AGE, "Embarked": PORT}, scores=ScoreShares(shares={"<0.5": 1.0})
)


def labels(bins: NumberBins | CategoryBins, values: list[object]) -> list[str]:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return [bins.bins[index] for index in bins.indices(array)]


def test_numbers_fall_between_edges_the_ends_take_what_is_beyond_and_none_is_missing() -> None:
    assert AGE.bins == ("<10", "10-20", "20-40", ">=40", MISSING)
    assert labels(AGE, [-5, 0, 9.99, 10, 19, 20, 39.5, 40, 1e9, None, float("nan")]) == [
        "<10", "<10", "<10", "10-20", "10-20", "20-40", "20-40", ">=40", ">=40", MISSING, MISSING,
    ]  # fmt: skip
    assert AGE.indices(np.array([5.0, np.nan, 45.0])).tolist() == [0, 4, 3]  # a float array too


def test_categories_not_kept_are_other_and_none_is_missing() -> None:
    assert PORT.bins == ("S", "C", OTHER, MISSING)
    assert labels(PORT, ["S", "C", "Q", "s", "", None, "S"]) == ["S", "C", OTHER, OTHER, OTHER, MISSING, "S"]
    classes = CategoryBins(
        categories=["3", "1", "2"], shares={"3": 0.5, "1": 0.3, "2": 0.2, "other": 0, "missing": 0}
    )
    assert labels(classes, [1, 2, 3, 4, None]) == [
        "1",
        "2",
        "3",
        OTHER,
        MISSING,
    ]  # ints as the card's strings
    nothing_kept = CategoryBins(categories=[], shares={"other": 0.8, "missing": 0.2})
    assert labels(nothing_kept, ["a name", None]) == [OTHER, MISSING]


def test_a_column_of_typed_rows_keeps_none() -> None:
    class Row:
        def __init__(self, age: float | None) -> None:
            self.Age = age

    assert column([Row(1.5), Row(None)], "Age").tolist() == [1.5, None]


@pytest.mark.parametrize(
    ("bins", "error"),
    [
        ({"kind": "number", "edges": [2, 1], "shares": {}}, "ascending"),
        ({"kind": "number", "edges": [1.0000001, 1.0000002], "shares": {}}, "first 6 digits"),
        ({"kind": "number", "edges": [1], "shares": {"<1": 0.5, ">=1": 0.5}}, "must name the bins"),
        ({"kind": "number", "edges": [1], "shares": {"<1": 0.5, ">=1": 0.2, "missing": 0}}, "sum to 1"),
        ({"kind": "category", "categories": ["other"], "shares": {}}, "neither"),
        (
            {"kind": "category", "categories": ["a"], "shares": {"a": 1.5, "other": -0.5, "missing": 0}},
            "between",
        ),
        ({"kind": "histogram", "shares": {}}, "kind"),
    ],
)
def test_a_card_whose_reference_is_not_consistent_fails_to_load_in_one_line(
    tmp_path: Path, bins: dict[str, object], error: str
) -> None:
    save_model(
        {"w": np.ones(1)}, tmp_path, name="toy", version="1", training_data=b"", metrics={}, libraries=()
    )
    card = json.loads((tmp_path / CARD_FILE).read_text())
    card["reference"] = {"rows": 3, "features": {"x": bins}}
    (tmp_path / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match=r"invalid model card .*reference\.features\.x") as caught:
        load_model(tmp_path)
    assert error in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_card_written_before_references_still_loads_without_one(tmp_path: Path) -> None:
    """Decided: an old card loads and serves (its inputs are not counted; the data plane warns)."""
    save_model(
        {"w": np.ones(1)}, tmp_path, name="toy", version="1", training_data=b"", metrics={}, libraries=()
    )
    written = json.loads((tmp_path / CARD_FILE).read_text())
    assert "reference" not in written  # as cards were written before #28
    assert load_model(tmp_path).card.reference is None


def test_a_reference_is_saved_and_read_back_as_it_was(tmp_path: Path) -> None:
    saved = save_model(
        {"w": np.ones(1)},
        tmp_path,
        name="toy",
        version="1",
        training_data=b"",
        metrics={},
        libraries=(),
        reference=REFERENCE,
    )
    assert read_card(tmp_path) == saved
    assert read_card(tmp_path).reference == REFERENCE
    shares = json.loads((tmp_path / CARD_FILE).read_text())["reference"]["features"]["Age"]["shares"]
    assert list(shares) == list(AGE.bins)  # in the bins' order, for a person reading the card
