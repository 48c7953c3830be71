"""What a request's ASGI scope, and the app's lifespan state, carry between the HTTP protocol
(`modelserving.server.uvicorn_protocol`) and the app: the keys, and the admission gate's type."""

from collections.abc import Callable
from typing import Any

HEADER_TIMEOUT_STATE = "modelserving.header_timeout_seconds"
ADMISSION_GATE_STATE = "modelserving.admission_gate"
# In a request's scope:
ARRIVED = "modelserving.arrived"  # time.monotonic() when its headers were complete
TICKET = "modelserving.ticket"  # its admission ticket, with the `deadline` its body must meet
ON_DISCONNECT = "modelserving.on_disconnect"  # called if the caller leaves unanswered
ON_COMPLETE = "modelserving.on_complete"  # called when its response is complete (middleware.py)

# The app's gate: (scope, raw path, headers, keep the connection?) -> a whole response to answer
# with at once, or None to serve the request.
Gate = Callable[[dict[str, Any], bytes, list[tuple[bytes, bytes]], bool], bytes | None]
