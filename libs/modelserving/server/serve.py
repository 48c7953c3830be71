"""The `serve` entry point shared by every service's `:serve` binary.

Settings and the model are checked before the server starts, so a bad setting
or a bad artifact stops the process with one clear line and a non-zero exit.
"""

import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

from modelserving.formats.artifacts import ModelLoadError, load_model
from modelserving.runtime import metrics
from modelserving.runtime.drift import check_reference
from modelserving.runtime.logs import configure_logging, logging_config
from modelserving.runtime.payloads import check_payload_log
from modelserving.runtime.shadow import check_shadow
from modelserving.runtime.tokens import TokenError, configured_tokens
from modelserving.server.app import create_app
from modelserving.server.uvicorn_protocol import GuardedHttpProtocol
from modelserving.service import ModelService
from modelserving.settings import SettingsError, load_settings

log = logging.getLogger("modelserving")


def serve(service: ModelService[Any, Any], app_factory: str) -> None:
    """Run `app_factory` ("package.module:function") under uvicorn with the env settings."""
    try:
        settings = load_settings()
        configured_tokens(settings)  # a named token file must be readable and hold usable tokens
        check_shadow(service, settings)  # SHADOW_URL needs an output to compare answers by
        check_payload_log(settings)  # PAYLOAD_LOG_FILE must be writable (a mounted volume)
    except (SettingsError, TokenError) as error:
        print(f"{service.name}: {error}", file=sys.stderr)
        sys.exit(2)
    if settings.grpc_port and not port_is_free(settings.host, settings.grpc_port):
        print(f"{service.name}: GRPC_PORT={settings.grpc_port} is in use on {settings.host}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_level, settings.access_log)
    try:
        loaded = load_model(
            settings.model_dir or service.model_dir,
            expected_name=service.name,
            artifact_format=service.artifact_format,
        )
        if service.health_keys is not None:
            service.health_keys.values(settings, loaded.card)
        check_reference(loaded.card, service.item_type)
    except ModelLoadError as error:
        log.error("cannot start: %s", error)
        sys.exit(1)
    if not configured_tokens(settings):
        log.warning("serving WITHOUT authentication: ALLOW_UNAUTHENTICATED=true")
    if settings.workers > 1 and not os.environ.get(metrics.MULTIPROCESS_DIR):
        # Workers are fresh processes that inherit this; each writes its metrics there.
        os.environ[metrics.MULTIPROCESS_DIR] = tempfile.mkdtemp(prefix="prometheus-")
    # uvicorn drains on SIGTERM, then re-raises it under the handler found at start;
    # with this one, a graceful shutdown ends with exit code 0, not death by signal.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run(
        app_factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=logging_config(settings.log_level, settings.access_log),
        log_level=settings.log_level,
        access_log=False,
        http=GuardedHttpProtocol,
        limit_concurrency=settings.max_connections,
        server_header=False,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds),
        # A worker busy importing scikit-learn on a loaded node must not be mistaken for a hung one.
        timeout_worker_healthcheck=30,
    )


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on `host`:`port`. Workers listen on the gRPC port side by side
    (SO_REUSEPORT), so only this check, before they start, finds another process there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def entry_points(
    service: ModelService[Any, Any], module_name: str
) -> tuple[Callable[[], FastAPI], Callable[[], None]]:
    """The `create_app` factory and `main` a service's module exports:

    create_app, main = entry_points(SERVICE, __name__)
    """
    if module_name == "__main__":  # run as `python -m <package>.main`: workers import it by its real name
        spec = sys.modules["__main__"].__spec__
        module_name = spec.name if spec else module_name

    def create_service_app() -> FastAPI:
        return create_app(service)

    def main() -> None:
        serve(service, app_factory=f"{module_name}:create_app")

    return create_service_app, main
