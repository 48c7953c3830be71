"""Pickled estimators (scikit-learn pipelines) as a `modelserving.ArtifactFormat`, via joblib.

Its own module so that only services serving this format import it: Pants infers
joblib from this import, so the others' images carry no joblib. The card's
sha256 is checked before `load` runs, so a swapped or damaged pickle is never
executed.
"""

import io
from typing import Any

import joblib

from modelserving.artifacts import ArtifactFormat


def _dump(estimator: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer, compress=3)
    return buffer.getvalue()


def _load(payload: bytes) -> Any:
    return joblib.load(io.BytesIO(payload))


JOBLIB = ArtifactFormat("joblib", "model.joblib", _dump, _load)
