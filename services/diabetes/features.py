"""Training data and estimator of the diabetes disease-progression model.

The 442 patients of Efron et al. (2004) ship with scikit-learn; training uses
them in their original units (`load_diabetes(scaled=False)`), so clients send
real measurements. The model is gradient-boosted decision stumps (XGBoost):
each tree splits on one variable, so the prediction is a sum of one smooth-ish
curve per variable, which cross-validation preferred to deeper trees on data
this small. Training only: serving never imports this (booster.py predicts).
"""

import numpy as np
import xgboost
from sklearn.datasets import load_diabetes

from diabetes.schemas import FEATURE_COLUMNS
from modelserving.dev.training import Dataset


def load_training_data() -> Dataset:
    """The 442 patients; the target is disease progression one year after baseline."""
    bunch = load_diabetes(scaled=False)
    if tuple(bunch.feature_names) != FEATURE_COLUMNS:
        raise ValueError(f"unexpected diabetes columns {bunch.feature_names}, expected {FEATURE_COLUMNS}")
    return Dataset(
        FEATURE_COLUMNS,
        np.asarray(bunch.data, dtype=float),
        "progression",
        np.asarray(bunch.target, dtype=float),
    )


def build_regressor(seed: int) -> xgboost.XGBRegressor:
    """Patients (columns in `FEATURE_COLUMNS` order) -> predicted progression."""
    return xgboost.XGBRegressor(
        n_estimators=300,
        max_depth=1,
        learning_rate=0.05,
        subsample=0.8,
        colsample_bytree=0.8,
        random_state=seed,
        # One thread: the same trees on any machine, whatever its core count; training takes a second.
        n_jobs=1,
    )
