"""Pickled estimators (scikit-learn pipelines) as a `modelserving.ArtifactFormat`, via joblib: the
format of last resort, for a model nothing else can hold.

Its own module so that only services serving this format import it: Pants infers
joblib from this import, so the others' images carry no joblib. The card's
sha256 is checked before `load` runs, so a swapped or damaged pickle is never
executed.
"""

import io
from typing import Any

import joblib

from modelserving.formats.artifacts import ArtifactFormat


def _dump(estimator: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer, compress=3)
    return buffer.getvalue()


def _load(payload: bytes) -> Any:
    return joblib.load(io.BytesIO(payload))


# A pickle: loading runs the code it names, so it loads only under the exact library versions
# it was saved with (the card's); prefer arrays
# (NPZ, `modelserving.formats.linear`, `modelserving.formats.trees`).
JOBLIB = ArtifactFormat("joblib", "model.joblib", _dump, _load, runs_code=True)
