"""The `serve` entry point shared by every service's `:serve` binary.

Settings and the model are checked before the server starts, so a bad setting
or a bad artifact stops the process with one clear line and a non-zero exit.
"""

import logging
import signal
import sys
from typing import Any

import uvicorn

from modelserving.artifacts import ModelLoadError, load_model
from modelserving.logs import configure_logging
from modelserving.service import ModelService
from modelserving.settings import SettingsError, load_settings

log = logging.getLogger("modelserving")


def serve(service: ModelService[Any, Any], app_factory: str) -> None:
    """Run `app_factory` ("package.module:function") under uvicorn with the env settings."""
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"{service.name}: {error}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_level)
    try:
        load_model(
            settings.model_dir or service.model_dir,
            expected_name=service.name,
            artifact_format=service.artifact_format,
        )
    except ModelLoadError as error:
        log.error("cannot start: %s", error)
        sys.exit(1)
    # uvicorn drains on SIGTERM, then re-raises it under the handler found at start;
    # with this one, a graceful shutdown ends with exit code 0, not death by signal.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run(
        app_factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds),
    )
