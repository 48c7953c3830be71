"""XGBoost's own UBJSON model format as a `modelserving.ArtifactFormat`: no pickle involved.

The file holds the trees, the objective and the feature names, nothing
executable, and stays loadable by later XGBoost versions.
"""

import xgboost

from modelserving import ArtifactFormat


def _dump(booster: xgboost.Booster) -> bytes:
    return bytes(booster.save_raw("ubj"))


def _load(payload: bytes) -> xgboost.Booster:
    booster = xgboost.Booster()
    booster.load_model(bytearray(payload))
    return booster


XGBOOST_UBJ = ArtifactFormat(name="xgboost-ubj", filename="model.ubj", dump=_dump, load=_load)
