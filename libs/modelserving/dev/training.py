"""What every service's `train.py` shares: its command line, data handling, saving, the summary.

A training script parses the shared options, fits and evaluates its model, then
hands it over:

    arguments = training_arguments("iris", default_version="1.0.0", usage=__doc__).parse_args(argv)
    train, held_out = data.split(held_out_fraction=0.3, seed=0, stratify=True)
    ...  # fit on `train`, score on `held_out`
    save_and_report(pipeline, arguments, name="iris", training_data=data.as_csv(), metrics=...,
                    reference=ReferenceRows(SERVICE, data.rows(Flower)), ...)

`./pants run services/<name>:train` runs from the repository root, so the
default output directory, `services/<name>/model`, is where the service's
committed model lives.
"""

import argparse
import contextlib
import csv
import difflib
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import get_scorer
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score, train_test_split

from modelserving.dev.export import ExportError
from modelserving.dev.reference import ReferenceRows, reference_of
from modelserving.formats.artifacts import NPZ, ModelCard, load_model, save_model, write_card

METRIC_DECIMALS = 4


def default_output_dir(name: str) -> Path:
    return Path("services") / name / "model"


def training_arguments(name: str, *, default_version: str, usage: str | None) -> argparse.ArgumentParser:
    """A parser with the options every `train.py` has: `--output-dir` and `--version`.

    A script may add its own options (Titanic adds `--data`) before parsing.
    """
    parser = argparse.ArgumentParser(description=usage, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=default_output_dir(name),
        help="where to write the artifact and model card (default: %(default)s)",
    )
    parser.add_argument(
        "--version", default=default_version, help="model version recorded in the card (default: %(default)s)"
    )
    return parser


def table_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    """Data that is not a file (such as a scikit-learn bundled data set) as CSV bytes.

    What a card's `training_data_sha256` is taken over for such data; floats are
    written as Python's shortest exact repr, so the bytes do not depend on numpy or pandas.
    """
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue().encode()


class TrainingDataError(ValueError):
    """The training data does not fit the service's schema; the message is one line."""


@contextlib.contextmanager
def refused_in_one_line(name: str) -> Iterator[None]:
    """Training stops with one line, `<name>: <why>`, not a traceback, when the data does not fit
    the schema (TrainingDataError) or the fitted pipeline cannot be served as arrays (ExportError)."""
    try:
        yield
    except (TrainingDataError, ExportError) as error:
        raise SystemExit(f"{name}: {error}") from None


def schema_columns(schema: type[BaseModel]) -> tuple[str, ...]:
    """A row schema's fields, in order: the model's input columns (the one place they are named)."""
    return tuple(schema.model_fields)


@dataclass(frozen=True)
class Dataset:
    """Labelled examples: a feature matrix (one row per example), its target vector, and their names."""

    columns: tuple[str, ...]
    features: np.ndarray
    target_column: str
    target: np.ndarray

    def __post_init__(self) -> None:
        if self.features.shape != (len(self.target), len(self.columns)):
            raise ValueError(
                f"features of shape {self.features.shape} do not fit {len(self.target)} targets"
                f" and {len(self.columns)} columns"
            )

    def __len__(self) -> int:
        return len(self.target)

    @classmethod
    def for_schema(
        cls,
        schema: type[BaseModel],
        columns: Sequence[str],
        features: Any,
        target_column: str,
        target: Any,
    ) -> "Dataset":
        """The data's columns that `schema` names, in its order, whatever order or extra columns
        the data has. TrainingDataError, in one line, if a field has no column of its name (with
        the nearest column, for a misspelling)."""
        where = {name: index for index, name in enumerate(columns)}
        wanted = schema_columns(schema)
        missing = [name for name in wanted if name not in where]
        if missing:
            hints = [
                f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                for name in missing
                for close in [difflib.get_close_matches(name, list(columns), n=1)]
            ]
            raise TrainingDataError(
                f"{schema.__name__} has fields the training data has no column for: {', '.join(hints)}"
            )
        matrix = np.asarray(features, dtype=float)[:, [where[name] for name in wanted]]
        return cls(wanted, matrix, target_column, np.asarray(target))

    def rows(self, schema: type[BaseModel]) -> list[BaseModel]:
        """The examples as `schema`'s typed rows (its fields are `columns`), as requests bring
        them: what a model's reference distribution is taken over (`ReferenceRows`)."""
        return [
            schema.model_validate(dict(zip(self.columns, row, strict=True))) for row in self.features.tolist()
        ]

    def as_csv(self) -> bytes:
        """The examples as CSV, what the card's `training_data_sha256` is taken over."""
        rows = (
            [*map(float, row), target.item()] for row, target in zip(self.features, self.target, strict=True)
        )
        return table_bytes((*self.columns, self.target_column), rows)

    def split(self, *, held_out_fraction: float, seed: int, stratify: bool) -> tuple["Dataset", "Dataset"]:
        """(train, held out): a shuffled split, keeping class proportions in both if `stratify`."""
        train_x, held_x, train_y, held_y = train_test_split(
            self.features,
            self.target,
            test_size=held_out_fraction,
            random_state=seed,
            stratify=self.target if stratify else None,
        )
        return self._with(train_x, train_y), self._with(held_x, held_y)

    def cross_validated(
        self, estimator: Any, *, scoring: str, folds: int, seed: int, stratify: bool
    ) -> float:
        """Mean `scoring` (a scikit-learn scorer name) of `estimator` over shuffled folds."""
        splitter = (StratifiedKFold if stratify else KFold)(n_splits=folds, shuffle=True, random_state=seed)
        scores = cross_val_score(estimator, self.features, self.target, cv=splitter, scoring=scoring)
        return float(np.mean(scores))

    def scored(self, model: Any, *, metric: str) -> float:
        """`metric` (a scikit-learn scorer name) of `model` on these examples: a scikit-learn
        estimator, or any model with `predict` (and, a classifier, `classes` and `predict_proba`),
        such as the arrays a service serves (`modelserving.formats.pipeline.ArrayPipeline`)."""
        return float(get_scorer(metric)(_as_estimator(model), self.features, self.target))

    def _with(self, features: np.ndarray, target: np.ndarray) -> "Dataset":
        return Dataset(self.columns, features, self.target_column, target)


class _Regressor(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """A model scikit-learn's scorers can call: its `predict`, as a fitted estimator's."""

    def __init__(self, model: Any = None) -> None:
        self.model = model

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(features))


class _Classifier(ClassifierMixin, _Regressor):  # type: ignore[misc]
    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_proba(features))


def _as_estimator(model: Any) -> Any:
    if isinstance(model, BaseEstimator):
        return model
    classes = getattr(model, "classes", None)
    if classes is None:
        return _Regressor(model)
    view = _Classifier(model)
    view.classes_ = np.asarray(classes)
    return view


def summary(card: ModelCard, output_dir: Path) -> str:
    """'trained iris 1.0.0 -> services/iris/model: holdout_accuracy 0.9778, training_rows 105'."""
    metrics = ", ".join(f"{metric} {value:g}" for metric, value in card.metrics.items())
    return f"trained {card.name} {card.version} -> {output_dir}: {metrics}"


def save_and_report(
    estimator: Any,
    arguments: argparse.Namespace,
    *,
    metrics: dict[str, float],
    reference: ReferenceRows | None,
    **card: Any,
) -> ModelCard:
    """Save the model where `arguments` say, with its metrics rounded for the card, and print a summary.

    `card` takes `save_model`'s other keywords (`name`, `training_data`,
    `libraries`, `description`, `artifact_format`), passed on as they are.
    Rounding keeps cards readable and their diffs quiet when a retrain changes
    nothing that matters. With `reference`, the saved model is loaded back as the service
    serves it and its reference distribution (modelserving.dev.reference) goes into the card:
    what serving counts live inputs against (None: a card without one, whose inputs no
    service counts).
    """
    output_dir: Path = arguments.output_dir
    saved = save_model(
        estimator,
        output_dir,
        version=arguments.version,
        metrics={metric: round(float(value), METRIC_DECIMALS) for metric, value in metrics.items()},
        **card,
    )
    if reference is not None:
        loaded = load_model(
            output_dir, expected_name=saved.name, artifact_format=card.get("artifact_format", NPZ)
        )
        try:
            distribution = reference_of(reference, loaded)
        except ValueError as error:
            raise TrainingDataError(str(error)) from None
        saved = saved.model_copy(update={"reference": distribution})
        write_card(output_dir, saved)
    print(summary(saved, output_dir))
    return saved
