"""A toy model service whose model can be made to fail on command, served for real.

The model multiplies each row's `x` by a factor. `Faults` decides what else it does: hold
each call until released (a slow or hung model), raise for the row `x = BAD_X` (one caller's
bad row), return one prediction too few (a model that miscounts). `serving()` runs the app
under uvicorn with the project's HTTP protocol in a thread of the test, with its gRPC API,
so that a test drives it over real connections while it holds the model in its hands.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import]
import httpx
import numpy as np
import uvicorn
from pydantic import BaseModel, Field

from modelserving import LoadedModel, ModelService, Settings, save_model
from modelserving.dev.testing import free_port
from modelserving.runtime.dataplane import DataPlane
from modelserving.server.app import create_app
from modelserving.server.uvicorn_protocol import GuardedHttpProtocol

BAD_X = 13.0


class Row(BaseModel):
    x: float = Field(ge=-1000, le=1000, allow_inf_nan=False)


class ScaledValue(BaseModel):
    value: float


class Scaled(BaseModel):
    predictions: list[ScaledValue]


@dataclass
class Faults:
    """What the model does besides its job; every call's rows are recorded in `calls`."""

    release: threading.Event = field(default_factory=threading.Event)  # clear it to hold calls
    running: threading.Event = field(default_factory=threading.Event)  # set while a call runs
    miscount: bool = False
    calls: list[list[float]] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)  # the threads calls ran on

    def __post_init__(self) -> None:
        self.release.set()

    def predicted(self) -> list[float]:
        return [x for call in self.calls for x in call]


def faulty_service(
    model_dir: Path, faults: Faults, predict_inline_rows: int = 0
) -> ModelService[Row, Scaled]:
    save_model(
        {"factor": np.array(3.0)},
        model_dir,
        name="toy",
        version="1.0",
        training_data=b"x\n1\n",
        metrics={"r2": 1.0},
        libraries=("numpy",),
    )

    def predict(model: LoadedModel, rows: Sequence[Row]) -> Scaled:
        xs = [row.x for row in rows]
        faults.calls.append(xs)
        faults.threads.add(threading.current_thread().name)
        faults.running.set()
        faults.release.wait(60)
        faults.running.clear()
        if BAD_X in xs:
            raise ValueError(f"the model cannot score x={BAD_X}")
        factor = float(model.estimator["factor"])
        values = [ScaledValue(value=x * factor) for x in xs]
        if faults.miscount and len(values) > 1:
            values.pop()
        return Scaled(predictions=values)

    return ModelService(
        name="toy",
        model_dir=model_dir,
        predict_path="/scale",
        item_type=Row,
        response_type=Scaled,
        predict=predict,
        examples=[Row(x=1.0)],
        predict_inline_rows=predict_inline_rows,
    )


@dataclass
class Served:
    url: str
    grpc_target: str
    plane: DataPlane
    faults: Faults

    def post(self, rows: list[dict[str, Any]], **options: Any) -> httpx.Response:
        return httpx.post(self.url + "/scale", json=rows, timeout=30, **options)

    def channel(self) -> Any:
        return grpc.insecure_channel(self.grpc_target)


@contextmanager
def serving(
    model_dir: Path, faults: Faults, predict_inline_rows: int = 0, **settings: Any
) -> Iterator[Served]:
    """The toy service under uvicorn (the project's protocol) in a thread, REST and gRPC."""
    port, grpc_port = free_port(), free_port()
    config = Settings(port=port, grpc_port=grpc_port, log_level="warning", **settings)
    app = create_app(faulty_service(model_dir, faults, predict_inline_rows), config)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, http=GuardedHttpProtocol, log_level="warning", lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    faults.calls.clear()  # the warm-up's
    faults.threads.clear()
    try:
        yield Served(f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", app.state.plane, faults)
    finally:
        faults.release.set()
        server.should_exit = True
        thread.join(60)
