"""A model's reference distribution, as its card records it (`ModelCard.reference`): each input
feature of the rows it was trained on, binned, and the scores it gave them.

Training writes it (`modelserving.dev.reference`); serving counts live inputs into the same bins
(`modelserving.runtime.drift`), and Prometheus compares the two (the population stability index
of `model_input_rows_total` against `model_input_reference_ratio`, k8s alerts). The binning is
here, beside the card, so that training and serving bin a value the same way:

- a number (`NumberBins`): between quantile `edges` (ascending), `low <= value < high`; a value
  below the first edge falls in the first bin, at or above the last in the last (`<e0`,
  `e0-e1`, ..., `>=eN`); None or NaN in `missing`;
- a category (`CategoryBins`): its own bin if training saw it often enough to keep it
  (`categories`, by name: an integer value is binned by the name it is written as), else
  `other`; None in `missing`.

So a feature's labels are the card's, a finite set, whatever clients send. Each feature's
`shares` maps every bin, in order, to the share of the reference rows in it (they sum to 1).
The scores (`scores`) are binned as the service's declared output bins its served
predictions (`ModelService.output`, `model_outputs_total`'s bins).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import cached_property
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

MISSING = "missing"  # None (a field left out or null), or NaN
OTHER = "other"  # a category training did not keep
SHARES_TOLERANCE = 1e-3  # a card's shares are rounded; they sum to 1 within this


def _check_shares(bins: Sequence[str], shares: dict[str, float], what: str) -> None:
    if list(shares) != list(bins):
        raise ValueError(f"{what}: shares must name the bins {list(bins)} in order, not {list(shares)}")
    if any(not 0 <= share <= 1 for share in shares.values()):
        raise ValueError(f"{what}: every share must be between 0 and 1")
    if abs(sum(shares.values()) - 1) > SHARES_TOLERANCE:
        raise ValueError(f"{what}: shares must sum to 1, not {sum(shares.values()):g}")


def number_labels(edges: Sequence[float]) -> tuple[str, ...]:
    """`<e0`, `e0-e1`, ..., `>=eN`: the ranges between `edges`, as `ScoreOutput` names them."""
    names = [f"<{edges[0]:g}"]
    names += [f"{low:g}-{high:g}" for low, high in itertools.pairwise(edges)]
    names.append(f">={edges[-1]:g}")
    return tuple(names)


class NumberBins(BaseModel):
    """A numeric feature: the ranges between its quantile `edges`, then `missing`."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["number"] = "number"
    edges: list[float] = Field(min_length=1)
    shares: dict[str, float]

    @model_validator(mode="after")
    def _valid(self) -> NumberBins:
        if self.edges != sorted(set(self.edges)) or not all(np.isfinite(self.edges)):
            raise ValueError("edges must be finite, ascending and distinct")
        if len({f"{edge:g}" for edge in self.edges}) != len(self.edges):
            raise ValueError(f"edges must differ in their first 6 digits: {number_labels(self.edges)}")
        _check_shares(self.bins, self.shares, "number bins")
        return self

    @property
    def bins(self) -> tuple[str, ...]:
        return (*number_labels(self.edges), MISSING)

    @cached_property
    def _edges(self) -> np.ndarray:
        return np.asarray(self.edges, dtype=float)

    def indices(self, values: Sequence[Any] | np.ndarray) -> np.ndarray:
        """The index in `bins` of each of `values` (numbers, None or NaN for missing)."""
        numbers = np.asarray(values, dtype=float)  # None becomes NaN
        found = np.searchsorted(self._edges, numbers, side="right")
        found[np.isnan(numbers)] = len(self.edges) + 1
        return found


class CategoryBins(BaseModel):
    """A categorical feature: one bin per category training kept, then `other` and `missing`."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["category"] = "category"
    categories: list[str]
    shares: dict[str, float]

    @model_validator(mode="after")
    def _valid(self) -> CategoryBins:
        if len(set(self.categories)) != len(self.categories) or {OTHER, MISSING} & set(self.categories):
            raise ValueError(f"categories must be distinct, and neither {OTHER!r} nor {MISSING!r}")
        _check_shares(self.bins, self.shares, "category bins")
        return self

    @property
    def bins(self) -> tuple[str, ...]:
        return (*self.categories, OTHER, MISSING)

    @cached_property
    def _lookup(self) -> dict[Any, int]:
        """Each category's index by its name, and by the integer or boolean it names (a
        `Literal[1, 2, 3]` field's values are ints, its categories their names); None's is
        `missing`'s."""
        lookup: dict[Any, int] = {}
        for index, name in enumerate(self.categories):
            lookup[name] = index
            if name.lstrip("-").isdecimal() and str(int(name)) == name:
                lookup[int(name)] = index
            elif name in ("True", "False"):
                lookup[name == "True"] = index
        lookup[None] = len(self.categories) + 1
        return lookup

    def indices(self, values: Sequence[Any] | np.ndarray) -> np.ndarray:
        """The index in `bins` of each of `values`: its category's (a value is its category's
        name, or the integer it names), `other`'s, or `missing`'s for None."""
        other = itertools.repeat(len(self.categories))
        return np.fromiter(map(self._lookup.get, values, other), dtype=np.intp, count=len(values))


FeatureBins = Annotated[NumberBins | CategoryBins, Field(discriminator="kind")]


class ScoreShares(BaseModel):
    """The reference rows' predictions, by the bins of the service's declared output."""

    model_config = ConfigDict(frozen=True)

    shares: dict[str, float] = Field(min_length=1)

    @model_validator(mode="after")
    def _valid(self) -> ScoreShares:
        _check_shares(list(self.shares), self.shares, "scores")
        return self

    @property
    def bins(self) -> tuple[str, ...]:
        return tuple(self.shares)


class Reference(BaseModel):
    """What a model's inputs and scores looked like in training: `rows` rows, each input feature
    binned (`features`, by field name), and their scores (`scores`; None for a service that
    declares no output)."""

    model_config = ConfigDict(frozen=True)

    rows: int = Field(ge=1)
    features: dict[str, FeatureBins] = Field(min_length=1)
    scores: ScoreShares | None = None


def shares_of(counts: np.ndarray, bins: Sequence[str], decimals: int = 6) -> dict[str, float]:
    """`counts` (one per bin) as shares of their total, rounded for the card."""
    total = float(np.sum(counts))
    return {name: round(float(count) / total, decimals) for name, count in zip(bins, counts, strict=True)}


def column(rows: Sequence[Any], field: str) -> np.ndarray:
    """One field of typed rows as a 1-d object array (None where a row has none)."""
    values = np.empty(len(rows), dtype=object)
    values[:] = [getattr(row, field) for row in rows]
    return values
