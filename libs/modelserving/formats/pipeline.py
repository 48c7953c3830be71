"""Fitted pipelines served as data: preprocessing and a model, as named NumPy arrays run by NumPy alone.

Training turns a fitted scikit-learn pipeline (or an XGBoost model) into an
`ArrayPipeline` (`modelserving.dev.export`); `PIPELINE` stores it as an `.npz`
of named arrays plus a JSON description of how they connect. Loading reads
numbers and text, never code, and needs NumPy only: a service's image holds
neither scikit-learn nor XGBoost.

    served = export.checked(fitted, train.features)  # training: refused in one line if not exact
    save_and_report(served, ..., artifact_format=PIPELINE)
    model.estimator.predict_proba(rows)               # serving: what `fitted.predict_proba` gave

What it runs, as scikit-learn and XGBoost compute it:
- column stages (a `ColumnTransformer`, or transformers applied to every column): per-column
  imputation, standard or min-max scaling, one-hot encoding (an unseen category encodes as all
  zeros), passthrough and drop;
- a linear model (`coef_`, `intercept_`), or trees: scikit-learn's decision trees, forests,
  gradient boosting and histogram gradient boosting, XGBoost's `gbtree` boosters. Trees keep
  their libraries' comparisons (float32 for scikit-learn's trees and XGBoost, float64 for
  histogram boosting) and their direction for missing values;
- the output link: identity, logistic, softmax or exp.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol

import numpy as np

from modelserving.formats.artifacts import NPZ, ArtifactFormat

FORMAT_VERSION = 1
Link = Literal["identity", "logistic", "softmax", "exp"]
# (tree, row) pairs walked at once: larger batches are walked in slices of about this many.
_PAIRS_PER_STEP = 65_536


class ColumnOp(Protocol):
    """One step applied to a block of columns: [rows, k] in, [rows, k'] out."""

    @property
    def kind(self) -> str:
        ...

    def apply(self, block: np.ndarray) -> np.ndarray:
        ...

    def arrays(self) -> dict[str, np.ndarray]:
        ...


class _FieldArrays:
    """An op whose dataclass fields (but `kind`) are its arrays, saved and loaded by name."""

    def arrays(self) -> dict[str, np.ndarray]:
        names = [field.name for field in fields(self) if field.name != "kind"]  # type: ignore[arg-type]
        return {name: getattr(self, name) for name in names}


@dataclass(frozen=True)
class Impute(_FieldArrays):
    """Missing values (NaN or None) replaced by one value per column."""

    fill: np.ndarray
    kind: str = "impute"

    def apply(self, block: np.ndarray) -> np.ndarray:
        missing = is_missing(block)
        return np.where(missing, self.fill, block) if missing.any() else block


@dataclass(frozen=True)
class Standardise(_FieldArrays):
    """(x - mean) / scale, in that order: scikit-learn's StandardScaler."""

    mean: np.ndarray
    scale: np.ndarray
    kind: str = "standardise"

    def apply(self, block: np.ndarray) -> np.ndarray:
        return (as_numbers(block) - self.mean) / self.scale  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Rescale(_FieldArrays):
    """x * scale + offset, in that order: scikit-learn's MinMaxScaler."""

    scale: np.ndarray
    offset: np.ndarray
    kind: str = "rescale"

    def apply(self, block: np.ndarray) -> np.ndarray:
        return as_numbers(block) * self.scale + self.offset  # type: ignore[no-any-return]


@dataclass(frozen=True)
class OneHot:
    """Each column as one indicator per known category, in order; an unseen value is all zeros."""

    categories: tuple[np.ndarray, ...]
    kind: str = "onehot"

    def apply(self, block: np.ndarray) -> np.ndarray:
        indicators = [block[:, [column]] == known for column, known in enumerate(self.categories)]
        return np.concatenate(indicators, axis=1).astype(np.float64)

    def arrays(self) -> dict[str, np.ndarray]:
        return {str(column): known for column, known in enumerate(self.categories)}


_OPS: dict[str, Any] = {
    "impute": lambda a: Impute(**a),
    "standardise": lambda a: Standardise(**a),
    "rescale": lambda a: Rescale(**a),
    "onehot": lambda a: OneHot(tuple(a[str(column)] for column in range(len(a)))),
}


@dataclass(frozen=True)
class Block:
    """Some input columns, through their steps in order. No steps: the columns as they are."""

    columns: np.ndarray  # int64: the input columns, in the order the steps expect them
    ops: tuple[ColumnOp, ...]

    def apply(self, rows: np.ndarray) -> np.ndarray:
        block = rows[:, self.columns]
        for op in self.ops:
            block = op.apply(block)
        return as_numbers(block)


@dataclass(frozen=True)
class ColumnStage:
    """Blocks side by side: the output is each block's columns, in block order."""

    blocks: tuple[Block, ...]

    def apply(self, rows: np.ndarray) -> np.ndarray:
        outputs = [block.apply(rows) for block in self.blocks]
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=1)


@dataclass(frozen=True)
class LinearModel:
    """raw = x @ coef.T + intercept: one output per row of `coef`."""

    coef: np.ndarray  # float64 [outputs, features]
    intercept: np.ndarray  # float64 [outputs]

    def raw(self, features: np.ndarray) -> np.ndarray:
        return features @ self.coef.T + self.intercept  # type: ignore[no-any-return]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef, "intercept": self.intercept}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> LinearModel:
        return cls(arrays["coef"], arrays["intercept"])


@dataclass(frozen=True)
class Trees:
    """raw = base + the sum over trees of the value of the leaf each row reaches.

    The nodes of every tree in flat arrays. A row at node n goes to `left[n]` when its feature
    `feature[n]` is <= `threshold[n]`, or is missing and `missing_left[n]`; to `right[n]`
    otherwise. A leaf is its own left and right child, so every row takes `depth` steps. With
    `float32`, features are compared as float32, against thresholds already rounded so that the
    comparison decides as the training library's did.
    """

    left: np.ndarray  # int64 [nodes]
    right: np.ndarray  # int64 [nodes]
    feature: np.ndarray  # int64 [nodes]
    threshold: np.ndarray  # float32 or float64 [nodes]
    missing_left: np.ndarray  # bool [nodes]
    value: np.ndarray  # float64 [nodes, outputs]: zero but at leaves
    roots: np.ndarray  # int64 [trees]
    base: np.ndarray  # float64 [outputs]
    depth: int
    _children: np.ndarray = field(init=False, repr=False, compare=False)  # node n's: 2n left, 2n + 1 right

    def __post_init__(self) -> None:
        object.__setattr__(self, "_children", np.stack([self.left, self.right], axis=1).ravel())

    def raw(self, features: np.ndarray) -> np.ndarray:
        features = features.astype(self.threshold.dtype)
        step = max(1, _PAIRS_PER_STEP // len(self.roots))
        if len(features) <= step:
            return self.base + self._leaves(features)  # type: ignore[no-any-return]
        parts = [self._leaves(features[start : start + step]) for start in range(0, len(features), step)]
        return self.base + np.concatenate(parts)  # type: ignore[no-any-return]

    def _leaves(self, features: np.ndarray) -> np.ndarray:
        count, width = shape(features)
        values = features.ravel()
        trees = len(self.roots)
        # One (tree, row) pair per entry, tree by tree; with one row, the roots as they are.
        node, offsets = self.roots, np.zeros(1, dtype=np.int64)
        if count > 1:
            node, offsets = np.repeat(self.roots, count), np.tile(np.arange(count) * width, trees)
        gaps = bool(np.isnan(values).any())
        for _ in range(self.depth):
            value = values.take(self.feature.take(node) + offsets)
            if gaps:
                goes_left = (value <= self.threshold.take(node)) | (
                    np.isnan(value) & self.missing_left.take(node)
                )
                node = self._children.take(2 * node + ~goes_left)
            else:
                node = self._children.take(2 * node + (value > self.threshold.take(node)))
        leaves: np.ndarray = self.value.take(node, axis=0)
        return leaves.reshape(trees, count, -1).sum(axis=0)  # type: ignore[no-any-return]

    def arrays(self) -> dict[str, np.ndarray]:
        names = ("left", "right", "feature", "threshold", "missing_left", "value", "roots", "base")
        return {name: getattr(self, name) for name in names} | {"depth": np.array(self.depth)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Trees:
        nodes = len(arrays["left"])
        for name in ("right", "feature", "threshold", "missing_left", "value"):
            if len(arrays[name]) != nodes:
                raise ValueError(f"trees.{name} has {len(arrays[name])} entries for {nodes} nodes")
        named = {name: array for name, array in arrays.items() if name != "depth"}
        return cls(**named, depth=int(arrays["depth"]))


@dataclass(frozen=True)
class ArrayPipeline:
    """Column stages, then a model, then its link: a fitted pipeline's predictions from arrays.

    `classes` (a classifier's, in the order of its probabilities) makes it a classifier:
    `predict_proba` gives the probabilities, `predict` the most probable class. Otherwise it is
    a regressor: `predict` gives one value per row (a column per output when there are several).
    """

    stages: tuple[ColumnStage, ...]
    model: LinearModel | Trees
    link: Link
    classes: np.ndarray | None = None

    def transform(self, rows: np.ndarray) -> np.ndarray:
        """The model's inputs: the rows through every column stage."""
        features = np.asarray(rows)
        for stage in self.stages:
            features = stage.apply(features)
        return as_numbers(features)

    def raw(self, rows: np.ndarray) -> np.ndarray:
        """The model's output before its link, [rows, outputs]."""
        return self.model.raw(self.transform(rows))

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        if self.classes is None:
            raise TypeError("a regressor has no class probabilities")
        return self._linked(self.raw(rows))

    def predict(self, rows: np.ndarray) -> np.ndarray:
        outputs = self._linked(self.raw(rows))
        if self.classes is not None:
            return self.classes[np.argmax(outputs, axis=1)]  # type: ignore[no-any-return]
        return outputs[:, 0] if shape(outputs)[1] == 1 else outputs

    def _linked(self, raw: np.ndarray) -> np.ndarray:
        if self.link == "logistic":  # one score: the second class's log-odds
            positive = 1.0 / (1.0 + np.exp(-raw[:, 0]))
            return np.column_stack([1.0 - positive, positive])
        if self.link == "softmax":
            exponentials = np.exp(raw - raw.max(axis=1, keepdims=True))
            return exponentials / exponentials.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]
        if self.link == "exp":
            return np.exp(raw)  # type: ignore[no-any-return]
        return raw

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The pipeline as named arrays, one of them (`spec`) the JSON that says how they connect."""
        arrays: dict[str, np.ndarray] = {}
        stages = []
        for s, stage in enumerate(self.stages):
            blocks = []
            for b, block in enumerate(stage.blocks):
                arrays[f"stage{s}.block{b}.columns"] = block.columns
                for o, op in enumerate(block.ops):
                    arrays |= {f"stage{s}.block{b}.op{o}.{k}": v for k, v in op.arrays().items()}
                blocks.append([op.kind for op in block.ops])
            stages.append(blocks)
        kind = "trees" if isinstance(self.model, Trees) else "linear"
        arrays |= {f"{kind}.{name}": array for name, array in self.model.arrays().items()}
        if self.classes is not None:
            arrays["classes"] = self.classes
        spec = {"format": FORMAT_VERSION, "stages": stages, "model": kind, "link": self.link}
        arrays["spec"] = np.array(json.dumps(spec))
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ArrayPipeline:
        spec = json.loads(str(arrays["spec"]))
        if spec.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"array pipeline format {spec.get('format')!r}, this library reads {FORMAT_VERSION}"
            )
        stages = []
        for s, kinds_per_block in enumerate(spec["stages"]):
            blocks = []
            for b, kinds in enumerate(kinds_per_block):
                prefix = f"stage{s}.block{b}."
                ops = tuple(_OPS[kind](_under(arrays, f"{prefix}op{o}.")) for o, kind in enumerate(kinds))
                blocks.append(Block(arrays[prefix + "columns"], ops))
            stages.append(ColumnStage(tuple(blocks)))
        kind = spec["model"]
        model_arrays = _under(arrays, f"{kind}.")
        model: LinearModel | Trees = (
            Trees.from_arrays(model_arrays) if kind == "trees" else LinearModel.from_arrays(model_arrays)
        )
        return cls(tuple(stages), model, spec["link"], arrays.get("classes"))


def shape(array: np.ndarray) -> tuple[int, ...]:
    return tuple(int(size) for size in np.shape(array))


def _under(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {name[len(prefix) :]: array for name, array in arrays.items() if name.startswith(prefix)}


def is_missing(values: np.ndarray) -> np.ndarray:
    """Where values are missing: NaN, or None in an array of objects."""
    if values.dtype == object:
        missing: np.ndarray = np.frompyfunc(lambda value: value is None or value != value, 1, 1)(values)
        return missing.astype(bool)
    if np.issubdtype(values.dtype, np.floating):
        return np.isnan(values)
    return np.zeros(values.shape, dtype=bool)


def as_numbers(values: np.ndarray) -> np.ndarray:
    """The values as float64, a missing one (None) as NaN."""
    if values.dtype == object:
        values = np.where(is_missing(values), np.nan, values)
    return values.astype(np.float64, copy=False)


def matrix(rows: Sequence[Any], columns: Sequence[str]) -> np.ndarray:
    """Request rows (objects with the columns as attributes) as the model's input matrix: float64
    when every value is a number (None as NaN), objects when some are text."""
    values = [[getattr(row, column) for column in columns] for row in rows]
    if all(value is None or isinstance(value, int | float) for row in values for value in row):
        numbers = [[np.nan if value is None else value for value in row] for row in values]
        return np.array(numbers, dtype=np.float64).reshape(len(values), len(columns))
    return as_objects(values, len(columns))


def as_objects(values: Sequence[Sequence[Any]], width: int) -> np.ndarray:
    """Rows as a [rows, width] array of objects (numbers, text and None side by side)."""
    table = np.empty((len(values), width), dtype=object)
    if values:
        table[:] = values
    return table


def _dump(pipeline: ArrayPipeline) -> bytes:
    return NPZ.dump(pipeline.to_arrays())


def _load(payload: bytes) -> ArrayPipeline:
    return ArrayPipeline.from_arrays(NPZ.load(payload))


# An `ArrayPipeline` in an .npz (no pickle: `np.load(allow_pickle=False)`); loads as the pipeline.
PIPELINE = ArtifactFormat("pipeline-npz", "model.npz", _dump, _load)
