"""Tree ensembles as plain arrays, evaluated with NumPy alone.

A fitted scikit-learn ensemble is converted once, when it is trained
(`TreeEnsemble.from_gradient_boosting`, `from_forest`), into flat node arrays that
the `npz` artifact format stores without pickle. Serving then needs NumPy only:
the service never imports the library that trained the model, which would cost
start-up time and memory. A prediction walks every tree at once, one vectorised
step per level, so one row costs a few NumPy calls per level rather than a
Python loop over trees.

Trees of depth <= 3 (scikit-learn's default depth) are not walked: their at
most 7 node tests are made for all trees at once, packed into one byte per
(tree, row), and that byte indexes a table of the leaf it leads to, built at
load; fewer, larger NumPy operations than the walk's.

Both follow scikit-learn: a row goes left when its feature, as float32, is <=
the node's threshold. Tests compare them on real data. Figures: bench/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

_ARRAYS = ("feature", "threshold", "value")
# Losses whose raw output is what callers read: log-odds (binary log loss) or the prediction itself.
_GRADIENT_BOOSTING_LOSSES = frozenset({"log_loss", "squared_error", "absolute_error", "huber", "quantile"})
# (tree, row) pairs walked together: each temporary stays under glibc's 128 kB mmap threshold, so it
# comes from the heap; larger ones were fresh, page-faulted memory every time.
_PAIRS_PER_STEP = 8_192
# Rows scored together on the table path (temporaries of about a megabyte for a few hundred trees).
_ROWS_PER_TABLE_STEP = 512
_MAX_TABLE_DEPTH = 3  # 7 node tests: a byte; depth 4 would need 2**15 leaves per tree


@dataclass(frozen=True)
class TreeEnsemble:
    """`raw(rows)` = base + the sum over trees of the leaf each row reaches.

    Every tree is stored complete, to the ensemble's depth, in heap order: the
    children of node i are 2i+1 and 2i+2, so a walk needs no child arrays, and
    every row takes exactly `depth` steps. A leaf shallower than that becomes
    nodes whose threshold is +inf (always left) above copies of its value.
    """

    feature: np.ndarray  # int64 [trees, 2**depth - 1]: the feature each inner node tests
    threshold: np.ndarray  # float64 [trees, 2**depth - 1]: go left when the feature <= threshold
    value: np.ndarray  # float64 [trees, 2**depth]: leaf outputs, learning rate applied
    base: float  # the constant every prediction starts from
    n_features: int
    _table: _LeafTable | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        table = _LeafTable.of(self) if self.depth <= _MAX_TABLE_DEPTH else None
        object.__setattr__(self, "_table", table)

    @property
    def depth(self) -> int:
        return _shape(self.value)[1].bit_length() - 1

    def raw(self, rows: np.ndarray) -> np.ndarray:
        """One raw output per row of a [rows, n_features] matrix of finite numbers."""
        # float32, as scikit-learn's trees compare features (then widened to the float64 threshold).
        rows = np.asarray(rows, dtype=np.float32)
        shape = _shape(rows)
        if len(shape) != 2 or shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {shape}")
        if np.isnan(rows).any():
            raise ValueError("rows must not contain NaN: fill gaps before the trees")
        if self._table is not None:
            score, step = self._table.raw, _ROWS_PER_TABLE_STEP
        else:
            score, step = self._walk, max(1, _PAIRS_PER_STEP // _shape(self.feature)[0])
        if shape[0] <= step:
            return self.base + score(rows)
        return self.base + np.concatenate(
            [score(rows[start : start + step]) for start in range(0, shape[0], step)]
        )

    def _walk(self, rows: np.ndarray) -> np.ndarray:
        trees, inner = _shape(self.feature)
        feature, threshold = self.feature.ravel(), self.threshold.ravel()
        values = rows.ravel()
        count = _shape(rows)[0]
        row_starts = np.arange(count) * self.n_features
        tree_starts = (np.arange(trees) * inner)[:, np.newaxis]
        node = np.zeros((trees, count), dtype=np.int64)  # each row's node in each tree
        for _ in range(self.depth):
            at = node + tree_starts
            node = 2 * node + 1 + (values[row_starts + feature[at]] > threshold[at])
        leaf = node - inner + (np.arange(trees) * (inner + 1))[:, np.newaxis]
        raw: np.ndarray = self.value.ravel()[leaf].sum(axis=0)
        return raw

    def to_arrays(self, prefix: str = "trees.") -> dict[str, np.ndarray]:
        """The ensemble as named arrays, for the npz artifact format."""
        arrays = {prefix + name: getattr(self, name) for name in _ARRAYS}
        arrays[prefix + "base"] = np.array(self.base)
        arrays[prefix + "n_features"] = np.array(self.n_features)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "trees.") -> TreeEnsemble:
        feature, threshold, value = (arrays[prefix + name] for name in _ARRAYS)
        shapes = [_shape(feature), _shape(threshold), _shape(value)]
        if len(shapes[0]) != 2 or shapes[1] != shapes[0] or shapes[2] != (shapes[0][0], shapes[0][1] + 1):
            raise ValueError(f"inconsistent tree arrays: shapes {shapes}")
        base, n_features = float(arrays[prefix + "base"]), int(arrays[prefix + "n_features"])
        return cls(feature, threshold, value, base=base, n_features=n_features)

    @classmethod
    def from_gradient_boosting(cls, model: Any) -> TreeEnsemble:
        """A fitted scikit-learn `GradientBoostingClassifier` (binary) or `GradientBoostingRegressor`.

        `raw` is then the model's `decision_function` (log-odds for a classifier; the prediction
        for a regressor). What `raw` cannot reproduce is refused: a loss with another link
        (`exponential`), an initial estimator other than the default constant or `"zero"`, and
        more than two classes.
        """
        from sklearn.dummy import DummyClassifier, DummyRegressor  # pants: no-infer-dep (training only)

        loss = model.get_params()["loss"]
        if loss not in _GRADIENT_BOOSTING_LOSSES:
            raise ValueError(
                f"loss={loss!r} cannot be converted: its link is not the log-odds or identity callers apply;"
                f" use one of {sorted(_GRADIENT_BOOSTING_LOSSES)}"
            )
        classes = getattr(model, "classes_", None)
        if classes is not None and len(classes) != 2:
            raise ValueError(f"only binary classifiers can be converted, not {len(classes)} classes")
        init = model.init_
        zero = isinstance(init, str) and init == "zero"
        prior = (
            isinstance(init, DummyClassifier) and init.strategy == "prior" or isinstance(init, DummyRegressor)
        )
        if not (zero or prior):
            raise ValueError(
                f"init={init!r} cannot be converted: only the default prior (init=None) or 'zero'"
            )
        trees = [estimator.tree_ for estimator in model.estimators_[:, 0]]
        base = 0.0
        if prior:  # its constant, by public API: the model's raw output less its trees'
            probe = np.zeros((1, model.n_features_in_))
            raw = model.decision_function(probe) if classes is not None else model.predict(probe)
            from_trees = sum(estimator.predict(probe)[0] for estimator in model.estimators_[:, 0])
            base = float(np.ravel(raw)[0] - model.learning_rate * from_trees)
        return cls._of(trees, lambda tree, node: tree.value[node, 0, 0] * model.learning_rate, base, model)

    @classmethod
    def from_forest(cls, model: Any) -> TreeEnsemble:
        """A fitted binary scikit-learn `RandomForestClassifier` or `DecisionTreeClassifier`.

        `raw` is then the probability of the second class, as `predict_proba` gives it: the
        mean over trees of each leaf's class fraction.
        """
        if len(model.classes_) != 2:
            raise ValueError("only binary classifiers can be converted")
        trees = [estimator.tree_ for estimator in getattr(model, "estimators_", [model])]

        def leaf(tree: Any, node: int) -> float:
            counts = tree.value[node, 0]
            return float(counts[1] / counts.sum()) / len(trees)

        return cls._of(trees, leaf, 0.0, model)

    @classmethod
    def _of(cls, trees: list[Any], leaf: Any, base: float, model: Any) -> TreeEnsemble:
        """scikit-learn `Tree`s stored complete to the deepest one's depth; `leaf(tree, node)` its output."""
        depth = max(1, max(tree.max_depth for tree in trees))
        inner = 2**depth - 1
        feature = np.zeros((len(trees), inner), dtype=np.int64)
        threshold = np.full((len(trees), inner), np.inf)
        value = np.zeros((len(trees), inner + 1))
        for index, tree in enumerate(trees):
            # (heap position, scikit-learn node) pairs, filled top-down.
            pending = [(0, 0)]
            while pending:
                position, node = pending.pop()
                if position >= inner:
                    value[index, position - inner] = leaf(tree, node)
                    continue
                if tree.children_left[node] == -1:  # a shallow leaf: +inf sends every row left
                    pending += [(2 * position + 1, node), (2 * position + 2, node)]
                else:
                    feature[index, position] = tree.feature[node]
                    threshold[index, position] = tree.threshold[node]
                    pending += [
                        (2 * position + 1, tree.children_left[node]),
                        (2 * position + 2, tree.children_right[node]),
                    ]
        return cls(feature, threshold, value, base=base, n_features=int(model.n_features_in_))


@dataclass(frozen=True)
class _LeafTable:
    """Shallow trees as lookup tables: the outcome of a tree's node tests, one bit each, is a byte
    that indexes the leaf it leads to. Each distinct (feature, threshold) test is made once."""

    test_feature: np.ndarray  # int64 [tests]
    test_threshold: np.ndarray  # float32 [tests, 1]: x <= t for a float32 x exactly when x <= the float64
    node_test: np.ndarray  # int64 [trees * inner]: the test each node makes
    bit: np.ndarray  # uint8 [inner]: node j's bit in the byte
    leaf_value: np.ndarray  # float64 [trees * 2**inner]: the value each byte leads to, per tree
    tree_offset: np.ndarray  # int64 [trees, 1]: where each tree's part of leaf_value starts

    @classmethod
    def of(cls, ensemble: TreeEnsemble) -> _LeafTable:
        trees, inner = _shape(ensemble.feature)
        pairs = np.stack([ensemble.feature.ravel().astype(np.float64), ensemble.threshold.ravel()], axis=1)
        tests, node_test = np.unique(pairs, axis=0, return_inverse=True)
        threshold = tests[:, 1].astype(np.float32)
        above = threshold.astype(np.float64) > tests[:, 1]  # rounded up: the float32 just below it
        threshold[above] = np.nextafter(threshold[above], np.float32(-np.inf))
        # For every byte, the leaf a walk reaches when node j goes left exactly when bit j is set.
        codes = np.arange(2**inner)
        node = np.zeros_like(codes)
        for _ in range(ensemble.depth):
            node = 2 * node + 1 + ((codes >> node) & 1 == 0)
        return cls(
            test_feature=tests[:, 0].astype(np.int64),
            test_threshold=threshold[:, np.newaxis],
            node_test=node_test.ravel(),
            bit=(1 << np.arange(inner)).astype(np.uint8),
            leaf_value=ensemble.value[:, node - inner].ravel(),
            tree_offset=(np.arange(trees) * 2**inner)[:, np.newaxis],
        )

    def raw(self, rows: np.ndarray) -> np.ndarray:
        """The sum of the leaves each row reaches (without the base)."""
        passed = rows.T[self.test_feature] <= self.test_threshold  # [tests, rows]
        bits = passed[self.node_test].reshape(len(self.tree_offset), len(self.bit), _shape(rows)[0])
        codes = np.einsum("tjr,j->tr", bits.view(np.uint8), self.bit)  # [trees, rows]
        raw: np.ndarray = self.leaf_value[codes + self.tree_offset].sum(axis=0)
        return raw


def _shape(array: np.ndarray) -> tuple[int, ...]:
    return tuple(int(size) for size in np.shape(array))


def sigmoid(raw: np.ndarray) -> np.ndarray:
    """Log-odds -> probability of the positive class."""
    result: np.ndarray = 1.0 / (1.0 + np.exp(-raw))
    return result
