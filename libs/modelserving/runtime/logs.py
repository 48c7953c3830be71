"""Structured logging: one JSON object per line, carrying the current request id."""

import json
import logging
import logging.config
import random
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id: ContextVar[str] = ContextVar("request_id", default="")
ACCESS_LOGGER = "modelserving.access"  # one line per request (modelserving.http.middleware)

# uvicorn adds an ANSI-coloured copy of its messages; JSON consumers do not want it.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON; `extra={...}` fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        current_request = request_id.get()
        if current_request:
            entry["request_id"] = current_request
        entry.update((key, value) for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def logging_config(level: str, access_log: bool = True) -> dict[str, Any]:
    """A `logging.config.dictConfig` sending every logger (ours, uvicorn's) to stderr as JSON lines.

    Access lines (`modelserving.access`, at info) follow `access_log` whatever `level` is: a
    logger's own level decides, and the root's does not filter what propagates to it.
    Given to uvicorn as `log_config`, so each worker process applies it too.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "modelserving.runtime.logs.JsonFormatter"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            **{
                name: {"handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
            ACCESS_LOGGER: {"handlers": [], "propagate": True, "level": "INFO" if access_log else "WARNING"},
        },
    }


def configure_logging(level: str, access_log: bool = True) -> None:
    logging.config.dictConfig(logging_config(level, access_log))


_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_random_bits = random.Random().getrandbits  # seeded from the system's entropy once per process


def valid_request_id(offered: str) -> str:
    """The client's request id if it is a sane one, else a new one: 128 random bits in hex, as
    a uuid4's, from Python's own generator (ids need to be unique, not secret, and the
    system's entropy is a system call per request)."""
    if offered and _VALID_REQUEST_ID.fullmatch(offered):
        return offered
    return "%032x" % _random_bits(128)
