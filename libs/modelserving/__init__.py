"""modelserving: the shared library every model service is built on.

A service declares a `ModelService` (its schemas, model directory and predict
function) and gets a complete, production-shaped FastAPI app from `create_app`,
served by `serve`.

Pickled (joblib) models are served with `modelserving.joblib_format.JOBLIB`, not
exported here: importing `modelserving` must not pull joblib into every image.
"""

from modelserving.app import create_app
from modelserving.artifacts import (
    NPZ,
    ArtifactFormat,
    LoadedModel,
    ModelCard,
    ModelLoadError,
    load_model,
    save_model,
)
from modelserving.cli import entry_points, serve
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
    "create_app",
    "entry_points",
    "load_model",
    "load_settings",
    "save_model",
    "serve",
]
