"""The original Titanic service's `/health_check` keys, kept for the monitors that match on them.

The first, one-model service sent `version` (the app revision), three environment keys and
its model version as a number (a date, e.g. 20230228); newer services send none of these.
`ORIGINAL_HEALTH_KEYS` declares them (`modelserving.service.HealthKeys`), and the library puts
them where the original had them, after `health` and `booted_at`.
"""

from functools import cache
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelserving import ModelCard, ModelLoadError, Settings
from modelserving.service import HealthKeys


class OriginalEnvironment(BaseSettings):
    """The environment variables the original reported as they were."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    aws_region: str | None = Field(default=None, description="Cloud region, reported as `aws_region`.")
    k8s_env: str | None = Field(default=None, description="Cluster environment, reported as `k8s_env`.")
    python_env: str | None = Field(
        default=None, description="Reported as `python_env`; ENVIRONMENT when unset."
    )


@cache
def original_environment() -> OriginalEnvironment:
    return OriginalEnvironment()


def model_version(card: ModelCard) -> int:
    """The card's version as the original sent it: a number; ModelLoadError if it is not one."""
    try:
        return int(card.version)
    except ValueError:
        raise ModelLoadError(f"titanic model versions are ints; the card says {card.version!r}") from None


def original_values(settings: Settings, card: ModelCard | None) -> dict[str, Any]:
    environment = original_environment()
    return {
        "version": settings.app_revision,
        "aws_region": environment.aws_region,
        "k8s_env": environment.k8s_env,
        "python_env": environment.python_env or settings.environment,
        "titanic_model_version": model_version(card) if card else None,
    }


ORIGINAL_HEALTH_KEYS = HealthKeys(
    fields={
        "version": (str, Field(examples=["3f2c1e0"], description="The app revision (APP_REVISION).")),
        "aws_region": (str | None, Field(examples=["eu-west-1"], description="AWS_REGION")),
        "k8s_env": (str | None, Field(examples=["prod"], description="K8S_ENV")),
        "python_env": (str, Field(examples=["prod"], description="PYTHON_ENV, else ENVIRONMENT")),
        "titanic_model_version": (
            int | None,
            Field(examples=[20230228], description="null until the model is loaded"),
        ),
    },
    values=original_values,
)
