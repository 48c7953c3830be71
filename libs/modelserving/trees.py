"""Tree ensembles as plain arrays, evaluated with NumPy alone.

A fitted gradient-boosting model is converted once, when it is trained
(`TreeEnsemble.from_gradient_boosting`), into flat node arrays that the `npz`
artifact format stores without pickle. Serving then needs NumPy only: the
service never imports the library that trained the model (over a second of
start-up for scikit-learn), and a prediction walks every tree at once, one
vectorised step per level, instead of visiting trees one by one in Python
(about 30 us for 300 trees and one row, where `predict_proba` takes 1.5 ms).

The walk is the one scikit-learn does: a row goes left when its feature, as
float32, is <= the node's threshold. Tests compare the two on real data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_ARRAYS = ("feature", "threshold", "left", "right", "value", "roots")


@dataclass(frozen=True)
class TreeEnsemble:
    """`raw(rows)` = base + the sum over trees of the leaf each row reaches.

    Nodes of all trees share one index space. Leaves point to themselves on both
    sides, so every row can take exactly `depth` steps whatever its leaf's depth.
    """

    feature: np.ndarray  # int64 [nodes]: the feature a node tests (0 at leaves)
    threshold: np.ndarray  # float64 [nodes]: go left when the feature <= threshold
    left: np.ndarray  # int64 [nodes]: index of the left child (the node itself at leaves)
    right: np.ndarray  # int64 [nodes]
    value: np.ndarray  # float64 [nodes]: a leaf's output, learning rate applied (0 inside)
    roots: np.ndarray  # int64 [trees]: index of each tree's root
    base: float  # the constant every prediction starts from
    depth: int
    n_features: int

    def raw(self, rows: np.ndarray) -> np.ndarray:
        """One raw output per row of a [rows, n_features] matrix of finite numbers."""
        # float32, as scikit-learn's trees compare features (then widened to the float64 threshold).
        rows = np.asarray(rows, dtype=np.float32)
        shape: tuple[int, ...] = np.shape(rows)
        if len(shape) != 2 or shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {shape}")
        if np.isnan(rows).any():
            raise ValueError("rows must not contain NaN: fill gaps before the trees")
        flat = rows.ravel()
        row_starts = np.arange(shape[0]) * self.n_features
        node = np.repeat(self.roots[:, np.newaxis], shape[0], axis=1)  # [trees, rows]
        for _ in range(self.depth):
            goes_left = flat[row_starts + self.feature[node]] <= self.threshold[node]
            node = np.where(goes_left, self.left[node], self.right[node])
        raw: np.ndarray = self.base + self.value[node].sum(axis=0)
        return raw

    def to_arrays(self, prefix: str = "trees.") -> dict[str, np.ndarray]:
        """The ensemble as named arrays, for the npz artifact format."""
        arrays = {prefix + name: getattr(self, name) for name in _ARRAYS}
        arrays[prefix + "shape"] = np.array([self.base, self.depth, self.n_features], dtype=np.float64)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "trees.") -> TreeEnsemble:
        base, depth, n_features = arrays[prefix + "shape"].tolist()
        return cls(
            **{name: arrays[prefix + name] for name in _ARRAYS},
            base=float(base),
            depth=int(depth),
            n_features=int(n_features),
        )

    @classmethod
    def from_gradient_boosting(cls, model: Any) -> TreeEnsemble:
        """A fitted scikit-learn `GradientBoostingClassifier` (binary) or `GradientBoostingRegressor`."""
        if model.estimators_.shape[1] != 1:
            raise ValueError("only binary classifiers and single-output regressors can be converted")
        trees = [estimator.tree_ for estimator in model.estimators_[:, 0]]
        offsets = np.cumsum([0] + [tree.node_count for tree in trees])
        leaf = np.concatenate([tree.children_left == -1 for tree in trees])
        own_index = np.arange(offsets[-1])
        left = np.concatenate(
            [tree.children_left + offset for tree, offset in zip(trees, offsets, strict=False)]
        )
        right = np.concatenate(
            [tree.children_right + offset for tree, offset in zip(trees, offsets, strict=False)]
        )
        value = np.concatenate([tree.value[:, 0, 0] for tree in trees]) * float(model.learning_rate)
        probe = np.zeros((1, model.n_features_in_))
        return cls(
            feature=np.where(leaf, 0, np.concatenate([tree.feature for tree in trees])).astype(np.int64),
            threshold=np.where(leaf, np.inf, np.concatenate([tree.threshold for tree in trees])),
            left=np.where(leaf, own_index, left).astype(np.int64),
            right=np.where(leaf, own_index, right).astype(np.int64),
            value=np.where(leaf, value, 0.0),
            roots=offsets[:-1].astype(np.int64),
            # The initial estimator's output: a constant for the default (prior) init.
            base=float(model._raw_predict_init(probe)[0, 0]),
            depth=max(tree.max_depth for tree in trees),
            n_features=int(model.n_features_in_),
        )


def sigmoid(raw: np.ndarray) -> np.ndarray:
    """Log-odds -> probability of the positive class."""
    result: np.ndarray = 1.0 / (1.0 + np.exp(-raw))
    return result
