"""Configuration of the Lambda functions, read once from environment variables.

The CDK stack sets these variables from CDK context; the offline runtime sets them itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator

M = TypeVar("M", bound=BaseModel)


def model_from_environ(
    model: type[M], names: Mapping[str, str], environ: Mapping[str, str] | None, what: str
) -> M:
    """``model`` from the environment variables ``names`` maps its fields to (unset or empty: the
    field's default); an invalid value is a deployment error, so the cold start fails loudly."""
    env = os.environ if environ is None else environ
    values = {field: env[var] for field, var in names.items() if env.get(var, "") != ""}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise RuntimeError(f"Invalid {what} configuration: {exc}") from exc


DEFAULT_MODEL_FALLBACK = "stable-image-core"


class Settings(BaseModel):
    """Validated environment of a handler."""

    images_bucket: str = Field(default="", description="Bucket for images and manifests (IMAGES_BUCKET).")
    default_model: str = Field(default=DEFAULT_MODEL_FALLBACK, description="Registry id (DEFAULT_MODEL).")
    allowed_models: tuple[str, ...] = Field(
        default=(), description="Registry ids (ALLOWED_MODELS); empty: all."
    )
    max_images_per_request: int = Field(default=40, ge=1, le=40)
    presign_expiry_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    map_max_concurrency: int = Field(default=10, ge=0, le=40)
    bedrock_max_attempts: int = Field(default=3, ge=1, le=10)
    bedrock_read_timeout_seconds: int = Field(default=120, ge=1, le=900)

    @field_validator("allowed_models", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        names = {
            "images_bucket": "IMAGES_BUCKET",
            "default_model": "DEFAULT_MODEL",
            "allowed_models": "ALLOWED_MODELS",
            "max_images_per_request": "MAX_IMAGES_PER_REQUEST",
            "presign_expiry_seconds": "PRESIGN_EXPIRY_SECONDS",
            "map_max_concurrency": "MAP_MAX_CONCURRENCY",
            "bedrock_max_attempts": "BEDROCK_MAX_ATTEMPTS",
            "bedrock_read_timeout_seconds": "BEDROCK_READ_TIMEOUT_SECONDS",
        }
        return model_from_environ(cls, names, environ, "handler")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process (cached; call ``get_settings.cache_clear()`` after changing the env)."""
    return Settings.from_environ()
