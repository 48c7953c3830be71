"""Titanic's service with a slow model: every predict call computes for `CALL_SECONDS` in
pure Python, holding the GIL but for the interpreter's switches, as a heavy model would.

Run as a server, like any service: `python -m reliability.slow_model` (the project's
`serve`), or `python -m uvicorn reliability.slow_model:create_app --factory` (plain uvicorn).
"""

import dataclasses
import time
from collections.abc import Sequence

from modelserving import LoadedModel
from modelserving.server.serve import entry_points
from titanic.main import SERVICE, predict_survival
from titanic.schemas import Passenger, SurvivalResponse

CALL_SECONDS = 0.3


def compute_for(seconds: float) -> None:
    """Busy Python work for `seconds`: the GIL is held except when the interpreter hands it over."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(1000))


def predict_slowly(model: LoadedModel, passengers: Sequence[Passenger]) -> SurvivalResponse:
    compute_for(CALL_SECONDS)
    return predict_survival(model, passengers)


SLOW_SERVICE = dataclasses.replace(SERVICE, predict=predict_slowly)

create_app, main = entry_points(SLOW_SERVICE, __name__)

if __name__ == "__main__":
    main()
