"""A model's reference distribution, taken by training (`Reference`, in its card): each input
feature of the training rows binned, and the scores the model gives them.

A `train.py` hands `save_and_report` a `ReferenceRows` (the service, its typed rows as training
read them, the fields not to watch); once the model is saved, it is loaded back as served
(verified, then the service's `prepare`), predicts those rows by the service's own `predict`,
and `reference_of` bins:

- numbers (a field typed int or float) between their deciles: the values at the 10th, ...,
  90th percentiles, as observed (repeated ones merged, so a feature with few values has fewer
  bins), plus `missing`;
- categories (a `Literal`, a string, a boolean): each value seen in at least MIN_CATEGORY_SHARE
  of the rows, the MAX_CATEGORIES most frequent at most, plus `other` and `missing`; a free-text
  field thus keeps no category of its own, and is watched for its share of missing values only;
- the scores: by the bins of the service's declared output (`ModelService.output`), as
  `model_outputs_total` counts served predictions.
"""

from __future__ import annotations

import collections
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel

from modelserving.formats.artifacts import LoadedModel
from modelserving.formats.reference import (
    CategoryBins,
    FeatureBins,
    NumberBins,
    Reference,
    ScoreShares,
    column,
    shares_of,
)
from modelserving.service import ModelService, prediction_list_field

QUANTILES = tuple(np.arange(1, 10) / 10)  # deciles
MIN_CATEGORY_SHARE = 0.01
MAX_CATEGORIES = 20
PREDICT_ROWS = 1000  # rows per call of the service's predict, taking the scores


@dataclass(frozen=True)
class ReferenceRows:
    """What a model's reference is taken over: `rows`, the service's typed rows (its `item_type`)
    as training read them; `unwatched`, fields left out (identifiers, free text a model reads
    only in part: their bins would tell nothing, or raise false alarms as ids grow)."""

    service: ModelService[Any, Any]
    rows: Sequence[BaseModel]
    unwatched: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        fields = self.service.item_type.model_fields
        unknown = [name for name in self.unwatched if name not in fields]
        if unknown:
            raise ValueError(f"{self.service.item_type.__name__} has no field {', '.join(unknown)}")
        if not self.rows:
            raise ValueError("a reference needs rows")

    @property
    def watched(self) -> tuple[str, ...]:
        return tuple(name for name in self.service.item_type.model_fields if name not in self.unwatched)


def is_number(annotation: Any) -> bool:
    """A field typed int or float (optional or constrained), not a Literal or a boolean."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return is_number(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return all(is_number(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    if origin is Literal:
        return False
    return annotation in (int, float)


def number_bins(values: np.ndarray) -> NumberBins:
    """Deciles of `values` (an object array, None for missing) as edges, and each bin's share."""
    numbers = np.asarray(values, dtype=float)  # None becomes NaN
    present = numbers[~np.isnan(numbers)]
    if not len(present):
        raise ValueError("no values to take quantiles of")
    edges = np.unique(np.quantile(present, QUANTILES, method="inverted_cdf")).tolist()
    bins = NumberBins.model_construct(edges=edges, shares={})
    counts = np.bincount(bins.indices(numbers), minlength=len(bins.bins))
    return NumberBins(edges=edges, shares=shares_of(counts, bins.bins))


def category_bins(values: np.ndarray) -> CategoryBins:
    """The values seen often enough as categories (most frequent first), and each bin's share."""
    seen = collections.Counter(str(value) for value in values if value is not None)
    enough = MIN_CATEGORY_SHARE * len(values)
    ranked = sorted(seen.items(), key=lambda item: (-item[1], item[0]))
    categories = [name for name, count in ranked[:MAX_CATEGORIES] if count >= enough]
    bins = CategoryBins.model_construct(categories=categories, shares={})
    counts = np.bincount(bins.indices(values), minlength=len(bins.bins))
    return CategoryBins(categories=categories, shares=shares_of(counts, bins.bins))


def reference_of(given: ReferenceRows, model: LoadedModel) -> Reference:
    """The reference of `model` (as loaded from its directory) on `given`'s rows."""
    service, rows = given.service, list(given.rows)
    fields = service.item_type.model_fields
    features: dict[str, FeatureBins] = {}
    for name in given.watched:
        values = column(rows, name)
        try:
            features[name] = (
                number_bins(values) if is_number(fields[name].annotation) else category_bins(values)
            )
        except ValueError as error:
            raise ValueError(f"reference: field {name}: {error}") from None
    scores = None
    if service.output is not None:
        served = service.prepare(model) if service.prepare is not None else model
        list_field, _ = prediction_list_field(service.response_type)
        counts = dict.fromkeys(service.output.bins, 0)
        for start in range(0, len(rows), PREDICT_ROWS):
            response = service.predict(served, rows[start : start + PREDICT_ROWS])
            for prediction in getattr(response, list_field):
                counts[service.output.bin_of(getattr(prediction, service.output.field))] += 1
        scores = ScoreShares(shares=shares_of(np.array(list(counts.values())), list(counts)))
    return Reference(rows=len(rows), features=features, scores=scores)
