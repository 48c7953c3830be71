"""Service settings, read from environment variables and validated at start-up."""

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class SettingsError(Exception):
    """A setting is invalid; the message is one line naming the variable."""


class Settings(BaseSettings):
    """Everything an operator can tune, one environment variable per field (`PORT`, `WORKERS`...)."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    host: str = Field(
        default="127.0.0.1", min_length=1, description="Interface to bind; 0.0.0.0 in containers."
    )
    port: int = Field(default=8000, ge=1, le=65535)
    grpc_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of the Open Inference Protocol's gRPC API (modelserving.grpc.server); unset: none.",
    )
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes.")
    log_level: LogLevel = "info"
    max_batch_size: int = Field(
        default=1000, ge=1, le=100_000, description="Most rows one request may carry."
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, le=1 << 30, description="Larger request bodies get 413, unread."
    )
    access_log: bool = Field(
        default=True, description="One log line per request, 401s included, whatever LOG_LEVEL is."
    )
    root_path: str = Field(
        default="",
        max_length=256,
        pattern=r"^(/[A-Za-z0-9._~-]+)*$",
        description="The path prefix a gateway routes to this service (/titanic): the docs, the OpenAPI "
        "document and links carry it; requests are served with or without it.",
    )
    model_dir: Path | None = Field(default=None, description="Directory with the model card and artifact.")
    app_revision: str = Field(default="unknown", description="Source revision of the running build.")
    environment: str = Field(default="dev", min_length=1, description="Deployment environment name.")
    graceful_shutdown_seconds: float = Field(
        default=20.0,
        ge=0,
        le=3600,
        description="Time accepted requests get to finish once the listener closes.",
    )
    header_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Time a request has to send its headers (slow clients)."
    )
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="Time a request has, after its headers, to send its body."
    )
    max_connections: int | None = Field(
        default=None,
        ge=1,
        description="Connections (and requests) a worker holds at once; beyond it, new requests get 503.",
    )
    max_concurrent_requests: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Inference requests a worker holds at once, at most (queued or predicting); beyond "
        "its limit a request gets 503 (gRPC UNAVAILABLE) at once (modelserving.runtime.admission).",
    )
    adaptive_concurrency: bool = Field(
        default=True,
        description="Let the limit follow measured queueing time, up to MAX_CONCURRENT_REQUESTS; "
        "false: the limit is MAX_CONCURRENT_REQUESTS.",
    )
    max_queue_seconds: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="Longest a request waits for the model; a caller's own shorter timeout "
        "(X-Request-Timeout-Ms, a gRPC deadline) wins. Past it: 504 (DEADLINE_EXCEEDED), unpredicted.",
    )
    max_call_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A model call running longer while requests wait is a hung model: liveness fails "
        "and the waiting requests get 503.",
    )
    micro_batching: bool = Field(
        default=True,
        description="Coalesce concurrent predictions into one model call (modelserving.runtime.batching).",
    )
    batch_wait_microseconds: int = Field(
        default=0, ge=0, le=100_000, description="How long a prediction may wait for others to batch with."
    )
    inference_threads: int = Field(
        default=1, ge=1, le=256, description="BLAS/OpenMP threads per worker: one, so workers do not fight."
    )

    auth_token_file: Path | None = Field(
        default=None, description="File of bearer tokens, one per line (a mounted Secret); enables auth."
    )
    auth_token: SecretStr | None = Field(default=None, description="A bearer token; enables auth.")
    allow_unauthenticated: bool = Field(
        default=False,
        description="Serve without tokens: for local runs (`./pants run`) and dev only. Without "
        "tokens and without this, the process refuses to start; in prod it never serves without them.",
    )
    metrics_require_token: bool = Field(
        default=False, description="With auth on, /metrics needs a token too."
    )

    shadow_url: str | None = Field(
        default=None,
        description="Base URL of a candidate version of this service (http://titanic-candidate:8000): a "
        "sample of the typed predict route's requests is mirrored to it and its answers compared with "
        "this one's (modelserving.runtime.shadow); unset: no shadowing.",
    )
    shadow_sample_rate: float = Field(
        default=1.0, gt=0, le=1, description="Share of predict requests mirrored to SHADOW_URL."
    )
    shadow_queue_size: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="Mirrored requests a worker holds waiting for the candidate; more are dropped (counted).",
    )
    shadow_timeout_seconds: float = Field(
        default=2.0, gt=0, le=60, description="Longest the mirror waits for the candidate's answer."
    )

    # Traces (modelserving.runtime.tracing): OpenTelemetry's own variables, which its SDK reads
    # too; checked here so that a bad one stops start-up in one line. Off without an endpoint.
    otel_sdk_disabled: bool = Field(default=False, description="true: no traces, whatever else is set.")
    otel_traces_exporter: Literal["otlp", "none"] = Field(
        default="otlp", description="none: no traces. Spans leave over OTLP/HTTP (protobuf)."
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        description="Base URL of an OTLP/HTTP collector (http://otel-collector:4318); spans go to "
        "<it>/v1/traces. Unset, with no OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: no traces.",
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None, description="Full URL spans are posted to; overrides OTEL_EXPORTER_OTLP_ENDPOINT."
    )
    otel_exporter_otlp_protocol: Literal["http/protobuf"] = Field(
        default="http/protobuf", description="The one OTLP transport installed."
    )
    otel_exporter_otlp_traces_protocol: Literal["http/protobuf"] = "http/protobuf"
    otel_traces_sampler: Literal[
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ] = Field(
        default="parentbased_always_on",
        description="Which traces are kept: parentbased_traceidratio with OTEL_TRACES_SAMPLER_ARG=0.01 "
        "keeps 1 % of new traces, and those a caller's traceparent marks sampled.",
    )
    otel_service_name: str | None = Field(
        default=None, min_length=1, description="The traces' service.name; unset: the model's name."
    )
    otel_traces_sampler_arg: float | None = Field(
        default=None, ge=0, le=1, description="The ratio of the *traceidratio samplers."
    )

    # Payload logging (#28): a sample of answered predictions written as CloudEvents (runtime/payloads.py).
    payload_log_url: str | None = Field(
        default=None,
        description="HTTP(S) endpoint that a sample of answered predictions is POSTed to, one CloudEvent "
        "(binary mode) per request (modelserving.runtime.payloads); unset: none.",
    )
    payload_log_file: Path | None = Field(
        default=None,
        description="File that a sample of answered predictions is appended to, one CloudEvent (JSON) per "
        "line; in a container, on a mounted volume (the root filesystem is read-only). At most one of "
        "PAYLOAD_LOG_URL and PAYLOAD_LOG_FILE.",
    )
    payload_log_sample_rate: float = Field(
        default=0.1, gt=0, le=1, description="Share of answered predictions logged, over every route."
    )
    payload_log_queue_size: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Sampled predictions a worker holds waiting for the sink; more are dropped (counted).",
    )
    payload_log_timeout_seconds: float = Field(
        default=2.0, gt=0, le=60, description="Longest the logger waits for PAYLOAD_LOG_URL to answer."
    )
    payload_log_hash_key: SecretStr | None = Field(
        default=None,
        min_length=16,
        description="Key (a mounted Secret) of the HMAC-SHA256 that fields a schema marks personal are "
        "replaced by in payload events; unset: those fields are left out.",
    )

    @field_validator("grpc_port")
    @classmethod
    def _not_the_http_port(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value == info.data.get("port"):
            raise ValueError(f"GRPC_PORT must differ from PORT ({value})")
        return value

    @field_validator(
        "shadow_url", "otel_exporter_otlp_endpoint", "otel_exporter_otlp_traces_endpoint", "payload_log_url"
    )
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is not None and not _is_base_url(value):
            raise ValueError("must be http(s)://host[:port][/path], without credentials, query or fragment")
        return None if value is None else value.rstrip("/")

    @field_validator("payload_log_file")
    @classmethod
    def _one_payload_sink(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and info.data.get("payload_log_url") is not None:
            raise ValueError("set at most one of PAYLOAD_LOG_URL and PAYLOAD_LOG_FILE")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lowercase_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


def _is_base_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        _ = parts.port  # a port out of range raises ValueError
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and parts.username is None
        and not parts.query
        and not parts.fragment
    )


def load_settings() -> Settings:
    """Read the settings from the environment, or raise SettingsError with one clear line."""
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc']).upper()}={issue['input']!r}: {issue['msg']}"
            for issue in error.errors()
        )
        raise SettingsError(f"invalid setting {problems}") from None
