"""modelserving: the shared library every model service is built on.

A service declares a `ModelService` (its schemas, model directory and predict function);
`modelserving.server.serve` serves it (REST, and gRPC when `GRPC_PORT` is set), and
`modelserving.rest.app.create_app` builds its FastAPI app alone. This package's root holds only
the declaration: importing it builds no app, registers no metric and starts nothing.

Pickled (joblib) models are served with `modelserving.formats.joblib.JOBLIB`, not exported
here: importing `modelserving` must not pull joblib into every image.
"""

from modelserving.formats.artifacts import (
    NPZ,
    ArtifactFormat,
    LoadedModel,
    ModelCard,
    ModelLoadError,
    load_model,
    save_model,
)
from modelserving.service import ModelService
from modelserving.settings import Settings, SettingsError, load_settings

__all__ = [
    "NPZ",
    "ArtifactFormat",
    "LoadedModel",
    "ModelCard",
    "ModelLoadError",
    "ModelService",
    "Settings",
    "SettingsError",
    "load_model",
    "load_settings",
    "save_model",
]
