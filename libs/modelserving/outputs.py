"""What a service's predictions are compared by, between two versions of its model.

A service names the one output of each prediction that tells versions apart, and its kind:
- `ClassOutput`: a classifier's class (`species`), one of a fixed set;
- `ScoreOutput`: a number (a probability, a regression's value), binned by fixed edges and
  compared within a tolerance.

The data plane counts every served prediction into its bin (`model_outputs_total`, labelled
by model version and bin: the classes, or the edges' ranges, so a finite set whatever clients
send); a canary's analysis compares those counts with the stable version's (k8s/rollouts),
and a shadow's agreement (`agree`) is judged by the same declaration.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

OTHER = "other"  # a class the declaration does not name: counted, never a label of its own


@dataclass(frozen=True)
class ClassOutput:
    """A classifier's class, in `field` of each prediction; counted per class of `classes`."""

    field: str
    classes: Sequence[str]

    @property
    def bins(self) -> tuple[str, ...]:
        return (*self.classes, OTHER)

    def bin_of(self, value: Any) -> str:
        label = str(value)
        return label if label in self.classes else OTHER

    def agree(self, value: Any, other: Any) -> bool:
        """Two answers agree when they name the same class."""
        return bool(value == other)


@dataclass(frozen=True)
class ScoreOutput:
    """A number, in `field` of each prediction; counted between `edges` (ascending), and two
    answers agree within `tolerance` (absolute)."""

    field: str
    edges: Sequence[float]
    tolerance: float
    _labels: tuple[str, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        edges = list(self.edges)
        if not edges or edges != sorted(set(edges)):
            raise ValueError(f"ScoreOutput({self.field!r}): edges must be ascending and distinct")
        if self.tolerance < 0:
            raise ValueError(f"ScoreOutput({self.field!r}): tolerance must not be negative")
        names = [f"<{edges[0]:g}"]
        names += [f"{low:g}-{high:g}" for low, high in itertools.pairwise(edges)]
        names.append(f">={edges[-1]:g}")
        object.__setattr__(self, "_labels", tuple(names))

    @property
    def bins(self) -> tuple[str, ...]:
        return self._labels

    def bin_of(self, value: Any) -> str:
        """The bin `value` falls in: `low <= value < high`."""
        return self._labels[bisect.bisect_right(self.edges, float(value))]

    def agree(self, value: Any, other: Any) -> bool:
        return abs(float(value) - float(other)) <= self.tolerance


ModelOutput = ClassOutput | ScoreOutput
