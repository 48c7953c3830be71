"""At training: a fitted scikit-learn pipeline or XGBoost model as an `ArrayPipeline`, checked exact.

    served = export.checked(fitted, train.features)

`checked` converts (`export`), then compares the arrays' predictions with the fitted
model's on the rows given (the whole training set): class probabilities for a classifier,
values for a regressor, to `RELATIVE_TOLERANCE` and `ABSOLUTE_TOLERANCE`, with the same
predicted class for every row. Anything it cannot convert, or converts inexactly, raises
`ExportError` with one line naming the step; nothing is saved then.

What converts (`modelserving.formats.pipeline` runs it): `Pipeline`s and `ColumnTransformer`s of
`SimpleImputer`, `StandardScaler`, `MinMaxScaler`, `OneHotEncoder`, "passthrough" and "drop";
then linear models (`LogisticRegression`, `LinearRegression`, `Ridge`, `Lasso`, `ElasticNet`,
the other regressors with `coef_`, and `PoissonRegressor` / `GammaRegressor` with their log
link); decision trees, random forests and extra trees; `GradientBoosting*`;
`HistGradientBoosting*` without categorical splits; XGBoost `XGBClassifier`, `XGBRegressor`
and `Booster` with the `gbtree` booster and a squared-error, logistic or softmax objective.

Histogram gradient boosting has no public view of its trees: `_predictors` is read, with
scikit-learn pinned in the constraints and `test_export.py` naming the version it was checked
against.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from modelserving.formats.pipeline import (
    ArrayPipeline,
    Block,
    ColumnOp,
    ColumnStage,
    Impute,
    LinearModel,
    Link,
    OneHot,
    Rescale,
    Standardise,
    Trees,
    as_objects,
    shape,
)

RELATIVE_TOLERANCE = 1e-5  # XGBoost sums its trees in float32; everything else agrees to ~1e-12
ABSOLUTE_TOLERANCE = 1e-6
_IDENTITY_LOSSES = frozenset({"squared_error", "absolute_error", "huber", "quantile"})
_XGBOOST_LINKS: dict[str, Link] = {
    "reg:squarederror": "identity",
    "reg:absoluteerror": "identity",
    "reg:pseudohubererror": "identity",
    "binary:logistic": "logistic",
    "multi:softprob": "softmax",
    "multi:softmax": "softmax",
}


class ExportError(ValueError):
    """The pipeline cannot be served as arrays, or not exactly; the message is one line saying why."""


def checked(fitted: Any, rows: Any) -> ArrayPipeline:
    """`export(fitted)`, after checking it predicts what `fitted` predicts on `rows`."""
    served = export(fitted)
    check(fitted, served, rows)
    return served


def export(fitted: Any) -> ArrayPipeline:
    """The arrays of a fitted pipeline (preprocessing steps, then a model) or of a model alone."""
    *preprocessing, model = (step for _, step in getattr(fitted, "steps", [("model", fitted)]))
    stages = _stages(preprocessing)
    converted, link = _model(model)
    classes = getattr(model, "classes_", None)
    return ArrayPipeline(stages, converted, link, None if classes is None else np.asarray(classes))


def check(fitted: Any, served: ArrayPipeline, rows: Any) -> float:
    """The largest difference between `served` and `fitted` on `rows`; ExportError past tolerance."""
    table = serving_matrix(rows)
    if served.classes is not None:
        expected, actual = fitted.predict_proba(rows), served.predict_proba(table)
        disagree = int(np.sum(fitted.predict(rows) != served.predict(table)))
        if disagree:
            raise ExportError(f"the arrays predict another class than the fitted model for {disagree} rows")
    else:
        expected, actual = fitted.predict(rows), served.predict(table)
    expected, actual = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if expected.shape != actual.shape:
        raise ExportError(
            f"the arrays give outputs of shape {actual.shape}, the fitted model {expected.shape}"
        )
    difference = np.abs(actual - expected)
    if not np.all(difference <= ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * np.abs(expected)):
        worst = int(np.argmax(difference.reshape(len(difference), -1).max(axis=1)))
        raise ExportError(
            f"the arrays differ from the fitted model by up to {difference.max():.3g} (row {worst});"
            f" the tolerance is {RELATIVE_TOLERANCE:g} relative + {ABSOLUTE_TOLERANCE:g}"
        )
    return float(difference.max(initial=0.0))


def serving_matrix(rows: Any) -> np.ndarray:
    """Training rows (an array or a data frame) as serving builds them: float64, or objects."""
    table = rows.to_numpy() if hasattr(rows, "to_numpy") else np.asarray(rows)
    if np.issubdtype(table.dtype, np.number) or np.issubdtype(table.dtype, np.bool_):
        return np.asarray(table, dtype=np.float64)
    return as_objects(table.tolist(), table.shape[1])


# Preprocessing.


def _stages(steps: Sequence[Any]) -> tuple[ColumnStage, ...]:
    """Column stages: a ColumnTransformer is one; consecutive plain transformers share one over
    every column."""
    stages: list[ColumnStage] = []
    plain: list[Any] = []
    for step in [*steps, None]:
        if step is None or _name(step) == "ColumnTransformer":
            if plain:
                width = int(plain[0].n_features_in_)
                stages.append(ColumnStage((Block(np.arange(width), _ops(plain)),)))
                plain = []
            if step is not None:
                stages.append(_column_transformer(step))
        else:
            plain.append(step)
    return tuple(stages)


def _column_transformer(transformer: Any) -> ColumnStage:
    names = list(getattr(transformer, "feature_names_in_", []))
    blocks = []
    for _, step, columns in transformer.transformers_:
        if isinstance(step, str) and step == "drop":
            continue
        indices = _column_indices(columns, names, int(transformer.n_features_in_))
        if len(indices) == 0:
            continue
        steps = (
            [] if isinstance(step, str) and step == "passthrough" else getattr(step, "steps", [("", step)])
        )
        blocks.append(Block(indices, _ops([inner for _, inner in steps if inner != "passthrough"])))
    if not blocks:
        raise ExportError("the ColumnTransformer keeps no column")
    return ColumnStage(tuple(blocks))


def _column_indices(columns: Any, names: list[str], width: int) -> np.ndarray:
    if isinstance(columns, slice):
        return np.arange(width)[columns]
    selected = np.atleast_1d(np.asarray(columns))
    if selected.dtype == bool:
        return np.flatnonzero(selected)
    if np.issubdtype(selected.dtype, np.integer):
        return selected.astype(np.int64)
    try:
        return np.array([names.index(str(name)) for name in selected], dtype=np.int64)
    except ValueError:
        raise ExportError(f"cannot find the columns {list(selected)} among {names}") from None


def _ops(steps: Sequence[Any]) -> tuple[ColumnOp, ...]:
    ops: list[ColumnOp] = []
    for step in steps:
        if ops and ops[-1].kind == "onehot":
            raise ExportError(f"cannot convert a {_name(step)} after a OneHotEncoder in the same block")
        ops.append(_op(step))
    return tuple(ops)


def _op(step: Any) -> ColumnOp:
    kind = _name(step)
    if kind == "StandardScaler":
        width = int(step.n_features_in_)
        mean = step.mean_ if step.with_mean else np.zeros(width)
        scale = step.scale_ if step.with_std else np.ones(width)
        return Standardise(np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64))
    if kind == "MinMaxScaler":
        if step.clip:
            raise ExportError("cannot convert a MinMaxScaler with clip=True")
        return Rescale(np.asarray(step.scale_, dtype=np.float64), np.asarray(step.min_, dtype=np.float64))
    if kind == "SimpleImputer":
        missing = step.missing_values
        if not (missing is None or (isinstance(missing, float) and np.isnan(missing))):
            raise ExportError(
                f"cannot convert a SimpleImputer for missing_values={missing!r}: only NaN or None"
            )
        if step.add_indicator:
            raise ExportError("cannot convert a SimpleImputer with add_indicator=True")
        fill = np.asarray(step.statistics_)
        if fill.dtype == object:
            fill = fill.astype(str)
        elif np.isnan(fill).any():
            raise ExportError("cannot convert a SimpleImputer that dropped an all-missing column")
        return Impute(fill)
    if kind == "OneHotEncoder":
        if step.min_frequency is not None or step.max_categories is not None:
            raise ExportError("cannot convert a OneHotEncoder that groups infrequent categories")
        categories = [np.asarray(known) for known in step.categories_]
        dropped = step.drop_idx_ if step.drop_idx_ is not None else [None] * len(categories)
        kept = [
            np.delete(known, drop) if drop is not None else known
            for known, drop in zip(categories, dropped, strict=True)
        ]
        return OneHot(tuple(known.astype(str) if known.dtype == object else known for known in kept))
    raise ExportError(
        f"cannot convert a {kind} step: the steps that convert are SimpleImputer, StandardScaler,"
        " MinMaxScaler, OneHotEncoder and ColumnTransformer"
    )


# Models.


def _model(model: Any) -> tuple[LinearModel | Trees, Link]:
    kind = _name(model)
    if kind in {"XGBClassifier", "XGBRegressor", "Booster"}:
        return _xgboost(model)
    if kind.startswith("HistGradientBoosting"):
        return _histogram_boosting(model)
    if kind.startswith("GradientBoosting"):
        return _gradient_boosting(model)
    if hasattr(model, "tree_") or kind.startswith(("RandomForest", "ExtraTrees")):
        return _forest(model)
    if hasattr(model, "coef_") and hasattr(model, "intercept_"):
        return _linear(model)
    raise ExportError(
        f"cannot convert a {kind}: the models that convert are linear models, decision trees, forests,"
        " (histogram) gradient boosting and XGBoost"
    )


def _linear(model: Any) -> tuple[LinearModel, Link]:
    coef = np.atleast_2d(np.asarray(model.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(model.intercept_, dtype=np.float64))
    converted = LinearModel(coef, np.broadcast_to(intercept, shape(coef)[:1]).copy())
    if hasattr(model, "classes_"):
        if _name(model) not in {"LogisticRegression", "LogisticRegressionCV"}:
            raise ExportError(
                f"cannot convert a {_name(model)}: the linear classifier that converts is LogisticRegression"
            )
        return converted, "logistic" if len(coef) == 1 else "softmax"
    if _name(model) in {"PoissonRegressor", "GammaRegressor"}:
        return converted, "exp"
    if _name(model) == "TweedieRegressor" or hasattr(model, "_base_loss"):
        raise ExportError(
            f"cannot convert a {_name(model)}: of the generalised linear models, Poisson and Gamma do"
        )
    return converted, "identity"


def _forest(model: Any) -> tuple[Trees, Link]:
    """A decision tree or a forest: the mean of its trees' leaves (class fractions for a classifier)."""
    estimators = getattr(model, "estimators_", [model])
    trees = [estimator.tree_ for estimator in estimators]
    classifier = hasattr(model, "classes_")
    if classifier and np.ndim(model.classes_) != 1:
        raise ExportError(f"cannot convert a multi-output {_name(model)}")
    nodes = []
    for tree in trees:
        if classifier:
            fractions = tree.value[:, 0, :]
            leaves = fractions / fractions.sum(axis=1, keepdims=True)
        else:
            leaves = tree.value[:, :, 0]
        nodes.append(_sklearn_nodes(tree, leaves / len(trees)))
    outputs = shape(nodes[0][5])[1]
    return _trees(nodes, outputs, float32=True), "identity"


def _gradient_boosting(model: Any) -> tuple[Trees, Link]:
    loss = model.get_params()["loss"]
    classifier = hasattr(model, "classes_")
    if not (loss == "log_loss" or loss in _IDENTITY_LOSSES):
        raise ExportError(
            f"cannot convert a {_name(model)} with loss={loss!r}:"
            " its link is not logistic, softmax or identity"
        )
    outputs = model.estimators_.shape[1]
    nodes = []
    for stage in model.estimators_:
        for output, estimator in enumerate(stage):
            leaves = np.zeros((estimator.tree_.node_count, outputs))
            leaves[:, output] = estimator.tree_.value[:, 0, 0] * model.learning_rate
            nodes.append(_sklearn_nodes(estimator.tree_, leaves))
    link = _classifier_link(outputs) if classifier else "identity"
    trees = _trees(nodes, outputs, float32=True)
    return _with_base(trees, int(model.n_features_in_), _public_raw(model)), link


def _histogram_boosting(model: Any) -> tuple[Trees, Link]:
    if np.any(getattr(model, "is_categorical_", None) or False):
        raise ExportError(
            f"cannot convert a {_name(model)} with categorical features: one-hot encode them before it"
        )
    loss = model.get_params()["loss"]
    classifier = hasattr(model, "classes_")
    if loss == "poisson":
        link: Link = "exp"
    elif classifier:
        link = _classifier_link(len(model._predictors[0]))
    elif loss in _IDENTITY_LOSSES:
        link = "identity"
    else:
        raise ExportError(f"cannot convert a {_name(model)} with loss={loss!r}")
    predictors = model._predictors  # private: no public view of the trees (module docstring)
    outputs = len(predictors[0])
    nodes = []
    for iteration in predictors:
        for output, predictor in enumerate(iteration):
            table = predictor.nodes
            value = np.zeros((len(table), outputs))
            value[:, output] = np.where(table["is_leaf"], table["value"], 0.0)
            leaf = table["is_leaf"].astype(bool)
            local = np.arange(len(table))
            nodes.append(
                (
                    np.where(leaf, local, table["left"]),
                    np.where(leaf, local, table["right"]),
                    np.where(leaf, 0, table["feature_idx"]),
                    np.where(leaf, np.inf, table["num_threshold"]),
                    table["missing_go_to_left"].astype(bool),
                    value,
                    int(table["depth"].max()),
                )
            )
    trees = _trees(nodes, outputs, float32=False)
    raw = _public_raw(model) if link != "exp" else lambda rows: np.asarray(np.log(model.predict(rows)))
    return _with_base(trees, int(model.n_features_in_), raw), link


def _xgboost(model: Any) -> tuple[Trees, Link]:
    import xgboost  # pants: no-infer-dep (training only; services that train with XGBoost depend on it)

    booster = model.get_booster() if hasattr(model, "get_booster") else model
    learner = json.loads(bytes(booster.save_raw("json")))["learner"]
    objective = learner["objective"]["name"]
    if objective not in _XGBOOST_LINKS:
        raise ExportError(
            f"cannot convert an XGBoost model with objective {objective!r}:"
            f" supported are {sorted(_XGBOOST_LINKS)}"
        )
    gradient_booster = learner["gradient_booster"]
    if gradient_booster["name"] != "gbtree":
        raise ExportError(f"cannot convert an XGBoost {gradient_booster['name']!r} booster: only 'gbtree'")
    model_json = gradient_booster["model"]
    outputs = max(1, int(learner["learner_model_param"]["num_class"]))
    nodes = []
    for tree, output in zip(model_json["trees"], model_json["tree_info"], strict=True):
        if any(int(kind) != 0 for kind in tree["split_type"]):
            raise ExportError(
                "cannot convert an XGBoost model with categorical splits: one-hot encode before it"
            )
        left, right = np.asarray(tree["left_children"]), np.asarray(tree["right_children"])
        leaf = left == -1
        local = np.arange(len(left))
        condition = np.asarray(tree["split_conditions"], dtype=np.float32)
        # XGBoost goes left when x < condition (float32); here left is x <= threshold.
        threshold = np.where(leaf, np.inf, np.nextafter(condition, np.float32(-np.inf)))
        value = np.zeros((len(left), outputs))
        value[:, output] = np.where(leaf, condition.astype(np.float64), 0.0)
        nodes.append(
            (
                np.where(leaf, local, left),
                np.where(leaf, local, right),
                np.where(leaf, 0, tree["split_indices"]),
                threshold,
                np.asarray(tree["default_left"], dtype=bool),
                value,
                _depth(left, right),
            )
        )
    link = _XGBOOST_LINKS[objective]
    trees = _trees(nodes, outputs, float32=True)
    width = int(learner["learner_model_param"]["num_feature"])

    def margin(rows: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(xgboost.DMatrix(rows), output_margin=True))

    return _with_base(trees, width, margin), link


# Trees: each tree's nodes, then all of them as one `Trees`.

Nodes = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]


def _sklearn_nodes(tree: Any, leaves: np.ndarray) -> Nodes:
    """A scikit-learn `Tree`'s nodes: leaves as their own children, with their row of `leaves`
    ([nodes, outputs]) as their value."""
    count = tree.node_count
    is_leaf = tree.children_left == -1
    local = np.arange(count)
    value = np.where(is_leaf[:, np.newaxis], leaves, 0.0)
    # scikit-learn compares the float32 feature with a float64 threshold: the largest float32 not above it.
    threshold = tree.threshold.astype(np.float32)
    above = threshold.astype(np.float64) > tree.threshold
    threshold[above] = np.nextafter(threshold[above], np.float32(-np.inf))
    missing_left = np.asarray(getattr(tree, "missing_go_to_left", np.zeros(count)), dtype=bool)
    return (
        np.where(is_leaf, local, tree.children_left),
        np.where(is_leaf, local, tree.children_right),
        np.where(is_leaf, 0, tree.feature),
        np.where(is_leaf, np.inf, threshold),
        missing_left,
        value,
        int(tree.max_depth),
    )


def _trees(nodes: Sequence[Nodes], outputs: int, *, float32: bool) -> Trees:
    """Every tree's nodes in one `Trees`, its base zero (`_with_base` sets it)."""
    sizes = [len(left) for left, *_ in nodes]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    def joined(index: int, dtype: Any) -> np.ndarray:
        parts = [np.asarray(part[index]) for part in nodes]
        if index in (0, 1):
            parts = [part + offset for part, offset in zip(parts, offsets, strict=True)]
        return np.concatenate(parts).astype(dtype)

    return Trees(
        left=joined(0, np.int64),
        right=joined(1, np.int64),
        feature=joined(2, np.int64),
        threshold=joined(3, np.float32 if float32 else np.float64),
        missing_left=joined(4, bool),
        value=np.concatenate([part[5] for part in nodes]).reshape(-1, outputs).astype(np.float64),
        roots=offsets,
        base=np.zeros(outputs),
        depth=max(1, max(part[6] for part in nodes)),
    )


def _with_base(trees: Trees, width: int, raw: Callable[[np.ndarray], np.ndarray]) -> Trees:
    """`trees` with the constant the model adds to its trees, read by public API: its `raw` output
    on one row of `width` zeros less what its trees give there."""
    probe = np.zeros((1, width))
    expected = np.asarray(raw(probe), dtype=np.float64).reshape(1, -1)
    from_trees = trees.raw(probe)
    return dataclasses.replace(trees, base=(expected - from_trees)[0])


def _public_raw(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    raw: Callable[[np.ndarray], np.ndarray] = (
        model.decision_function if hasattr(model, "classes_") else model.predict
    )
    return raw


def _classifier_link(outputs: int) -> Link:
    return "logistic" if outputs == 1 else "softmax"


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    depth, level = 0, [0]
    while True:
        level = [child for node in level for child in (left[node], right[node]) if child != -1]
        if not level:
            return max(depth, 1)
        depth += 1


def _name(step: Any) -> str:
    return type(step).__name__
