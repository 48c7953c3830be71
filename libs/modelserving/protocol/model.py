"""`ProtocolModel`: a served model as the protocol sees it (metadata, readiness, inference), which
both transports answer through, over one data plane."""

from typing import Any

from modelserving.protocol.codec import V2Codec
from modelserving.protocol.errors import ErrorCode, ProtocolError
from modelserving.protocol.types import EXTENSIONS, InferenceRequest, ModelMetadata, ServerMetadata
from modelserving.runtime.admission import Ticket
from modelserving.runtime.dataplane import DataPlane
from modelserving.runtime.logs import request_id
from modelserving.runtime.payloads import Route


class ProtocolModel:
    """The protocol's answers about one data plane's model, whichever transport asks (the REST
    routes of `modelserving.rest.v2`, the RPCs of `modelserving.grpc`); refusals are
    ProtocolErrors."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.service = plane.service
        self.codec = V2Codec(plane.service, plane.settings.max_batch_size)

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(
            name=self.service.name, version=self.plane.settings.app_revision, extensions=EXTENSIONS
        )

    def loaded_version(self, model_name: str, model_version: str | None) -> str:
        """The version serving `model_name`: 404 for another model or version, 503 before loading."""
        if model_name != self.service.name:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"model '{model_name}' not found")
        version = self.plane.state.version
        if version is None:
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"model '{model_name}' is not ready")
        if model_version is not None and model_version != version:
            raise ProtocolError(
                ErrorCode.NOT_FOUND, f"model '{model_name}' version '{model_version}' not found"
            )
        return version

    def metadata(self, model_name: str, model_version: str | None) -> ModelMetadata:
        version = self.loaded_version(model_name, model_version)
        return self.codec.metadata(version, self.plane.state.platform)

    def ready(self, model_name: str, model_version: str | None) -> bool:
        """Whether the model can be inferred: False while it loads, 404 for another model."""
        try:
            self.loaded_version(model_name, model_version)
        except ProtocolError as error:
            if error.code is not ErrorCode.UNAVAILABLE:
                raise
            return False
        return self.plane.state.ready

    async def infer(
        self, inference: InferenceRequest, version: str, ticket: Ticket, route: Route
    ) -> dict[str, Any]:
        """The response body (an `InferenceResponse` as plain values) for `inference`, to the
        model at `version` (`loaded_version`'s, checked before the request was read), admitted
        with `ticket` (`DataPlane.admit`), come in by `route` (the transport's)."""
        rows = self.codec.rows(inference)
        response = await self.plane.predict(rows, ticket, route)
        outputs = self.codec.outputs_of(response, inference.get("outputs"))
        return {
            "model_name": self.service.name,
            "model_version": version,
            "id": request_id.get() if inference.get("id") is None else inference["id"],
            "outputs": outputs,
        }
