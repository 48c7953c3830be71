"""Training data and estimator of the iris species model.

The classic 150 iris flowers ship with scikit-learn, so training needs no data
files. The model takes a matrix of measurements with columns in
`schemas.FEATURE_COLUMNS` order; `build_pipeline` scales them and fits a
multinomial logistic regression, which suits three classes this well separated
and gives calibrated probabilities. Training only: serving never imports this.
"""

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from iris.schemas import FEATURE_COLUMNS, SPECIES
from modelserving.dev.training import Dataset


def load_training_data() -> Dataset:
    """The 150 flowers; the target is an index into `SPECIES`."""
    bunch = load_iris()
    if tuple(bunch.target_names) != SPECIES:
        raise ValueError(f"unexpected iris species {tuple(bunch.target_names)}, expected {SPECIES}")
    return Dataset(FEATURE_COLUMNS, np.asarray(bunch.data, dtype=float), "species", np.asarray(bunch.target))


def build_pipeline() -> Pipeline:
    """Measurements -> species probabilities, columns in `SPECIES` order."""
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=1000))])
