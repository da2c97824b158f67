"""Configuration of the Lambda functions, read once from environment variables.

Each settings model names the variable of each field (``ENVIRONMENT``) and is both how a handler
reads its environment (``from_environ``) and how the environment is written (``to_environment``):
the CDK stack writes it from CDK context and the offline engine from its own configuration, both
through :func:`handler_environment` (and, for the batch functions, :class:`BatchSettings`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import ClassVar, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator

from image_pipeline.core.admission import parse_quotas
from image_pipeline.core.metric_names import SERVICE

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


def model_to_environ(model: BaseModel, names: Mapping[str, str]) -> dict[str, str]:
    """The environment variables that :func:`model_from_environ` reads back as ``model``: one for each
    field given when ``model`` was made (a field left at its default is not written, and reads back
    as the same default; nor is a None, which reads back as unset). Tuples are comma-separated; a whole
    float is written without a fraction."""
    return {
        var: _environ_text(getattr(model, field))
        for field, var in names.items()
        if field in model.model_fields_set and getattr(model, field) is not None
    }


def _environ_text(value: object) -> str:
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value), sort_keys=True)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


DEFAULT_MODEL_FALLBACK = "stable-image-core"


class Settings(BaseModel):
    """Validated environment of a handler."""

    #: Field -> the environment variable it is read from and written to.
    ENVIRONMENT: ClassVar[dict[str, str]] = {
        "images_bucket": "IMAGES_BUCKET",
        "default_model": "DEFAULT_MODEL",
        "allowed_models": "ALLOWED_MODELS",
        "max_images_per_request": "MAX_IMAGES_PER_REQUEST",
        "presign_expiry_seconds": "PRESIGN_EXPIRY_SECONDS",
        "map_max_concurrency": "MAP_MAX_CONCURRENCY",
        "bedrock_max_attempts": "BEDROCK_MAX_ATTEMPTS",
        "bedrock_read_timeout_seconds": "BEDROCK_READ_TIMEOUT_SECONDS",
        "admission_table": "ADMISSION_TABLE",
        "admission_waiters_table": "ADMISSION_WAITERS_TABLE",
        "model_concurrency": "MODEL_CONCURRENCY",
        "admission_lease_seconds": "ADMISSION_LEASE_SECONDS",
        "region": "AWS_REGION",
        "index_table": "INDEX_TABLE",
        "image_expiration_days": "IMAGE_EXPIRATION_DAYS",
        "share_cache": "SHARE_CACHE",
        "daily_spend_limit_usd": "DAILY_SPEND_LIMIT_USD",
    }
    #: Fields read but never written: Lambda sets AWS_REGION itself (a function may not set it).
    READ_ONLY: ClassVar[frozenset[str]] = frozenset({"region"})

    images_bucket: str = Field(default="", description="Bucket for images and manifests (IMAGES_BUCKET).")
    default_model: str = Field(default=DEFAULT_MODEL_FALLBACK, description="Registry id (DEFAULT_MODEL).")
    allowed_models: tuple[str, ...] = Field(
        default=(), description="Registry ids (ALLOWED_MODELS); empty: all."
    )
    max_images_per_request: int = Field(default=40, ge=1, le=40)
    presign_expiry_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    map_max_concurrency: int = Field(default=40, ge=0, le=40)
    bedrock_max_attempts: int = Field(default=3, ge=1, le=10)
    bedrock_read_timeout_seconds: int = Field(
        default=60,
        ge=1,
        le=900,
        description="Seconds an InvokeModel attempt waits for its answer (BEDROCK_READ_TIMEOUT_SECONDS); "
        "botocore's own default. Its worst case with the attempts is in core/time_budget.py.",
    )
    region: str = Field(
        default="",
        description="The deployment's Region (AWS_REGION, set by Lambda): a request's model must be offered "
        "here. Empty: not checked.",
    )
    admission_table: str = Field(
        default="",
        description="DynamoDB table of the models' slots (ADMISSION_TABLE, core/admission.py); empty: "
        "admission control off, every branch calls its model at once.",
    )
    admission_waiters_table: str = Field(
        default="",
        description="DynamoDB table of the branches waiting for a slot (ADMISSION_WAITERS_TABLE, "
        "core/admission.py's queue of task tokens).",
    )
    model_concurrency: dict[str, int] = Field(
        default_factory=dict,
        description="Calls in flight per model (MODEL_CONCURRENCY, JSON); a model not named gets "
        "core/admission.default_quota of its documented requests per minute.",
    )
    #: core/admission.DEFAULT_LEASE_SECONDS: the execution's TimeoutSeconds (tests/infra/test_time_budget.py).
    admission_lease_seconds: int = Field(default=1800, ge=60, le=86_400)

    @field_validator("model_concurrency", mode="before")
    @classmethod
    def _quotas(cls, value: object) -> object:
        return parse_quotas(value, source="MODEL_CONCURRENCY")

    index_table: str = Field(
        default="",
        description="The image index's DynamoDB table (INDEX_TABLE, core/image_index.py); empty: no index "
        "and no prompt cache.",
    )
    image_expiration_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="Days an image is kept (the bucket's lifecycle, the index's TTL).",
    )
    share_cache: bool = Field(
        default=False,
        description="SHARE_CACHE: the prompt cache serves any caller's earlier image (imagegen:shareCache); "
        "off: only the caller's own.",
    )

    daily_spend_limit_usd: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="DAILY_SPEND_LIMIT_USD: each caller's spend ceiling per UTC day, from the cost model "
        "(imagegen:dailySpendLimitUsd; core/spend.py, kept in the index table). Unset: only callers given "
        "their own (imagegen keys create --daily-spend-usd) have one.",
    )

    @field_validator("allowed_models", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        return model_from_environ(cls, cls.ENVIRONMENT, environ, "handler")

    def to_environment(self) -> dict[str, str]:
        """The variables :meth:`from_environ` reads back as these settings (the fields given; not the
        Region, which the Lambda service sets)."""
        names = {f: v for f, v in self.ENVIRONMENT.items() if f not in self.READ_ONLY}
        return model_to_environ(self, names)


def handler_environment(settings: Settings, *, log_level: str) -> dict[str, str]:
    """The environment every handler gets: ``settings``, and Powertools' service name and log level.
    The CDK app and the offline engine both write it with this function."""
    return {
        **settings.to_environment(),
        "POWERTOOLS_SERVICE_NAME": SERVICE,
        "POWERTOOLS_LOG_LEVEL": log_level,
    }


class BatchSettings(BaseModel):
    """The batch functions' environment, read once per container (``image_pipeline.core.batch``).

    ``BATCH_MAX_CONCURRENCY`` caps the child executions running at once (the Distributed Map's
    ``MaxConcurrency``): with ``MAP_MAX_CONCURRENCY`` images per request, at most their product of
    Bedrock calls are in flight. ``BATCH_TOLERATED_FAILURE_PERCENTAGE`` is the default share of lines
    that may fail before the batch fails.
    """

    #: Field -> the environment variable it is read from and written to.
    ENVIRONMENT: ClassVar[dict[str, str]] = {
        "max_concurrency": "BATCH_MAX_CONCURRENCY",
        "tolerated_failure_percentage": "BATCH_TOLERATED_FAILURE_PERCENTAGE",
        "max_lines": "BATCH_MAX_LINES",
        "max_bytes": "BATCH_MAX_BYTES",
    }

    max_concurrency: int = Field(default=10, ge=1, le=10_000)
    tolerated_failure_percentage: float = Field(default=10.0, ge=0, le=100)
    max_lines: int = Field(default=10_000, ge=1, le=100_000)
    max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> BatchSettings:
        return model_from_environ(cls, cls.ENVIRONMENT, environ, "batch")

    def to_environment(self) -> dict[str, str]:
        """The variables :meth:`from_environ` reads back as these settings (the fields given)."""
        return model_to_environ(self, self.ENVIRONMENT)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process (cached; call ``get_settings.cache_clear()`` after changing the env)."""
    return Settings.from_environ()
