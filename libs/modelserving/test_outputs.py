"""The outputs versions are compared by: bounded bins, and agreement as each kind states it."""

import pytest

from modelserving.outputs import ClassOutput, ScoreOutput

DECILES = ScoreOutput("score", edges=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), tolerance=0.05)


def test_a_score_falls_in_the_bin_from_its_lower_edge_up_to_the_next() -> None:
    assert DECILES.bins == (
        "<0.1", "0.1-0.2", "0.2-0.3", "0.3-0.4", "0.4-0.5",
        "0.5-0.6", "0.6-0.7", "0.7-0.8", "0.8-0.9", ">=0.9",
    )  # fmt: skip
    assert [DECILES.bin_of(score) for score in (0.0, 0.099, 0.1, 0.5, 0.899, 0.9, 1.0)] == [
        "<0.1", "<0.1", "0.1-0.2", "0.5-0.6", "0.8-0.9", ">=0.9", ">=0.9"
    ]  # fmt: skip


def test_integer_edges_name_their_bins_without_decimals() -> None:
    progression = ScoreOutput("progression", edges=(50, 100, 150), tolerance=10.0)
    assert progression.bins == ("<50", "50-100", "100-150", ">=150")
    assert progression.bin_of(-1e9) == "<50" and progression.bin_of(1e9) == ">=150"


def test_scores_agree_within_the_tolerance_only() -> None:
    assert DECILES.agree(0.50, 0.549) and DECILES.agree(0.549, 0.50)
    assert not DECILES.agree(0.50, 0.551)


def test_classes_are_their_own_bins_and_agree_only_when_equal() -> None:
    species = ClassOutput("species", ("setosa", "versicolor", "virginica"))
    assert species.bins == ("setosa", "versicolor", "virginica", "other")
    assert [species.bin_of(name) for name in ("virginica", "unheard-of", None)] == [
        "virginica",
        "other",
        "other",
    ]
    assert species.agree("setosa", "setosa") and not species.agree("setosa", "virginica")


@pytest.mark.parametrize("edges", [(), (0.5, 0.1), (0.1, 0.1)])
def test_edges_must_ascend(edges: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="ascending"):
        ScoreOutput("score", edges=edges, tolerance=0.1)


def test_a_negative_tolerance_is_refused() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        ScoreOutput("score", edges=(0.5,), tolerance=-0.1)
