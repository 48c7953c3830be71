"""The protocol's refusals: a code, which each transport maps to its own status (REST to an HTTP
status, gRPC to a status code), and a message naming what is at fault."""

from collections.abc import Sequence
from enum import Enum
from typing import Any


class ErrorCode(Enum):
    INVALID_ARGUMENT = "invalid argument"
    NOT_FOUND = "not found"
    UNAVAILABLE = "unavailable"
    UNSUPPORTED_MEDIA_TYPE = "unsupported media type"


class ProtocolError(Exception):
    """A request the protocol refuses, and why."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> ProtocolError:
    """The commonest refusal: the request itself is at fault."""
    return ProtocolError(ErrorCode.INVALID_ARGUMENT, message)


def field_path(location: Sequence[Any]) -> str:
    """("body", 0, "Pclass") -> "body[0].Pclass"."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path
