"""The served model: an XGBoost booster over the patients' columns in `schemas.FEATURE_COLUMNS` order.

Needs XGBoost alone (no scikit-learn): serving imports this, training makes the
booster with `fitted_booster`.
"""

import numpy as np
import xgboost

from diabetes.schemas import FEATURE_COLUMNS


def fitted_booster(regressor: xgboost.XGBRegressor) -> xgboost.Booster:
    """The fitted model without its scikit-learn wrapper, its features named for checks at prediction."""
    booster = regressor.get_booster()
    booster.feature_names = list(FEATURE_COLUMNS)
    return booster


def predict_progression(booster: xgboost.Booster, patients: np.ndarray) -> np.ndarray:
    """Predicted progression for a matrix of patients, columns in `FEATURE_COLUMNS` order."""
    return booster.predict(xgboost.DMatrix(patients, feature_names=list(FEATURE_COLUMNS)))
