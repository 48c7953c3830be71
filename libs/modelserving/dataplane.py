"""The data plane of one worker: its model's state and its predictions, with no HTTP in it.

`DataPlane` loads the verified model, warms it up and reports readiness; `infer(rows)`
answers rows with the service's typed response, predicted on the inference thread
(`batching.InferenceQueue`). The routers (`app.py`: the typed route, health and
probes, metrics; `v2.py`: the Open Inference Protocol) are thin layers over it, each
speaking its own API's terms.
"""

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from modelserving import metrics
from modelserving.artifacts import LoadedModel, load_model
from modelserving.batching import InferenceQueue
from modelserving.process import freeze_survivors
from modelserving.service import ModelService, prediction_list_field
from modelserving.settings import Settings

log = logging.getLogger("modelserving")


class NotReady(Exception):
    """The model is not loaded (yet, or any more)."""


@dataclass(frozen=True)
class ModelState:
    """What clients are told about the model: `version` None until it is loaded."""

    name: str
    version: str | None
    platform: str  # the library the model was trained with, as its card names it first
    ready: bool
    shutting_down: bool


class DataPlane:
    """One worker's model: loading, readiness, metadata and `infer(rows)`."""

    def __init__(self, service: ModelService[Any, Any], settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.booted_at = datetime.now(UTC)
        self.model: LoadedModel | None = None
        self.ready = False
        self.shutting_down = False
        field, _ = prediction_list_field(service.response_type)
        self._queue = InferenceQueue(
            self._predict,
            field,
            max_rows=settings.max_batch_size,
            max_wait=settings.batch_wait_microseconds / 1e6,
            batching=settings.micro_batching,
            name=f"{service.name}-inference",
        )

    @property
    def state(self) -> ModelState:
        return ModelState(
            name=self.service.name,
            version=self.model.card.version if self.model else None,
            platform=next(iter(self.model.card.library_versions), "") if self.model else "",
            ready=self.ready and not self.shutting_down,
            shutting_down=self.shutting_down,
        )

    async def load(self) -> None:
        """Load and verify the model, warm it up, then start predicting; errors stop start-up."""
        service = self.service
        started = time.perf_counter()
        loaded = await asyncio.to_thread(
            load_model,
            self.settings.model_dir or service.model_dir,
            expected_name=service.name,
            artifact_format=service.artifact_format,
        )
        service.model_version(loaded.card)  # a version clients could not be sent stops start-up here
        metrics.MODEL_LOAD_SECONDS.labels(service.name, loaded.card.version).set(
            time.perf_counter() - started
        )
        if service.prepare is not None:
            loaded = await asyncio.to_thread(service.prepare, loaded)
        await asyncio.to_thread(service.predict, loaded, list(service.examples))
        freeze_survivors()
        self._queue.start()
        self.model = loaded
        self.ready = True
        log.info("model ready", extra={"model": loaded.card.name, "version": loaded.card.version})

    async def stop(self) -> None:
        """Stop taking predictions; finish the queued ones."""
        self.ready = False
        self.shutting_down = True
        await asyncio.to_thread(self._queue.stop, self.settings.graceful_shutdown_seconds)

    async def infer(self, rows: Sequence[Any]) -> BaseModel:
        """The typed response for `rows`; NotReady before the model is loaded."""
        if self.model is None:
            raise NotReady(f"model '{self.service.name}' is not loaded yet")
        return await self._queue.infer(rows)

    def _predict(self, rows: Sequence[Any]) -> BaseModel:
        assert self.model is not None, "the queue starts once the model is loaded"
        response: BaseModel = metrics.predict(self.service, self.model, rows)
        return response
