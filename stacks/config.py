"""The deployment's configuration: CDK context keys (``cdk.json`` or ``-c key=value``), validated once.

Every key is optional; the defaults are in ``cdk.json`` and repeated here so a bare ``cdk.App()`` (tests)
gets the same deployment. Values given with ``-c`` arrive as strings: lists may be JSON arrays or
comma-separated, the throttle a JSON object, numbers and booleans their usual text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal

from constructs import Node
from image_pipeline.core.admission import parse_quotas
from image_pipeline.core.settings import Settings, handler_environment
from image_pipeline.models.facts import Offer, model_facts, registry_model_facts, standing
from image_pipeline.models.ids import BEDROCK_MODEL_IDS
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PREFIX = "imagegen:"
#: The Region an environment-agnostic stack assumes (``imagegen:region``): where the active Stability
#: models are offered (``lambdas/image_pipeline/models/model_facts.json``).
DEFAULT_REGION = "us-west-2"
REGION_NAME = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
#: The app's cdk.json (its context: feature flags and the imagegen defaults).
CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"


def cdk_json_context(path: Path = CDK_JSON) -> dict[str, Any]:
    """The ``context`` of cdk.json, for running the app without the CDK CLI (tests, ``python app.py``):
    the CLI passes it itself."""
    return dict(json.loads(path.read_text()).get("context", {}))


class Throttle(BaseModel):
    """API limits: the stage's steady rate and burst (per second, all clients), and with API keys the
    usage plan's daily quota per key."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    rate_limit: float = Field(default=10, gt=0, le=10_000, alias="rateLimit")
    burst_limit: int = Field(default=20, ge=1, le=5_000, alias="burstLimit")
    quota_per_day: int = Field(default=1_000, ge=1, alias="quotaPerDay")


def active_registry_models() -> tuple[str, ...]:
    """The registry's text-to-image models that were active when the facts file was read: the default
    of ``imagegen:allowedModels`` (cdk.json lists them too). The Stability AI Image Services (operations
    on a stored image) are opt-in: a first call to any of them subscribes the account to all thirteen
    through AWS Marketplace (https://docs.aws.amazon.com/bedrock/latest/userguide/stable-image-services.html,
    read 2026-11-30), so a deployment lists them in ``imagegen:allowedModels`` to offer refining."""
    return tuple(
        m.registry_id
        for m in registry_model_facts()
        if m.registry_id and m.lifecycle.status == "ACTIVE" and m.text_to_image
    )


class ImagegenConfig(BaseModel):
    """Typed configuration of one deployment; see ``docs/deploy.md`` for the table of keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    default_model: str = Field(default="stable-image-core", alias="defaultModel")
    allowed_models: tuple[str, ...] = Field(
        default_factory=active_registry_models, min_length=1, alias="allowedModels"
    )
    region: str = Field(default=DEFAULT_REGION, pattern=REGION_NAME.pattern)
    marketplace_first_use: Literal["viaBedrock", "unconditional", "off"] = Field(
        default="viaBedrock", alias="marketplaceFirstUse"
    )
    max_images_per_request: int = Field(default=40, ge=1, le=40, alias="maxImagesPerRequest")
    presign_expiry_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600, alias="presignExpirySeconds")
    image_expiration_days: int = Field(default=30, ge=1, le=3650, alias="imageExpirationDays")
    #: How long a lasting link (``GET /links/{token}``) lasts from when it is minted; unset: as long as
    #: the images are kept (``imageExpirationDays``), never longer.
    link_lifetime_days: int | None = Field(default=None, ge=1, le=3650, alias="linkLifetimeDays")
    cors_origins: tuple[str, ...] = Field(default=(), alias="corsOrigins")
    api_auth: Literal["apiKey", "iam", "cognito"] = Field(default="apiKey", alias="apiAuth")
    #: With ``apiAuth=cognito``: the prefix of the user pool's hosted domain
    #: (``<prefix>.auth.<region>.amazoncognito.com``); unset: ``imagegen-<the stack's id>``.
    cognito_domain_prefix: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
        alias="cognitoDomainPrefix",
    )
    throttle: Throttle = Field(default_factory=Throttle)
    map_max_concurrency: int = Field(default=40, ge=0, le=40, alias="mapMaxConcurrency")
    #: Calls in flight per model for admission control (``stacks/admission.py``); unset models: the
    #: conservative default of their documented quota.
    model_concurrency: dict[str, int] = Field(default_factory=dict, alias="modelConcurrency")
    bedrock_max_attempts: int = Field(default=3, ge=1, le=10, alias="bedrockMaxAttempts")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", alias="logLevel")
    bucket_versioning: bool = Field(default=False, alias="bucketVersioning")
    destroy_on_removal: bool = Field(default=False, alias="destroyOnRemoval")
    web: bool = Field(default=True)
    batch_max_concurrency: int = Field(default=4, ge=1, le=1_000, alias="batchMaxConcurrency")
    batch_tolerated_failure_percentage: float = Field(
        default=10.0, ge=0, le=100, alias="batchToleratedFailurePercentage"
    )
    #: Each caller's spend ceiling per UTC day, in USD of the cost model (``core/spend.py``); unset: only
    #: callers given their own (``imagegen keys create --daily-spend-usd``) have one.
    daily_spend_limit_usd: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, alias="dailySpendLimitUsd"
    )
    #: The prompt cache serves any caller's earlier image of the same request (off: each caller's own).
    share_cache: bool = Field(default=False, alias="shareCache")
    alarm_email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", alias="alarmEmail")

    @field_validator("allowed_models", "cors_origins", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [v.strip() for v in text.split(",") if v.strip()]
        return value

    @field_validator("throttle", mode="before")
    @classmethod
    def _object(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("allowed_models")
    @classmethod
    def _known_models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = list(BEDROCK_MODEL_IDS)
        unknown = [m for m in value if m not in known]
        if unknown:
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; the registry has {', '.join(known)}")
        return tuple(dict.fromkeys(value))

    @field_validator("model_concurrency", mode="before")
    @classmethod
    def _quotas(cls, value: Any) -> Any:
        quotas = parse_quotas(value, source=f"{PREFIX}modelConcurrency")
        unknown = [m for m in quotas if m not in BEDROCK_MODEL_IDS]
        if unknown:
            raise ValueError(
                f"unknown model(s) {', '.join(unknown)}; the registry has {', '.join(BEDROCK_MODEL_IDS)}"
            )
        return quotas

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if origin != "*" and not _is_origin(origin):
                raise ValueError(f"{origin!r} is not an origin like https://example.com (no path)")
        if "*" in value and len(value) > 1:
            raise ValueError("'*' allows every origin: give it alone")
        return value

    @field_validator("cognito_domain_prefix")
    @classmethod
    def _domain_prefix(cls, value: str | None) -> str | None:
        # Cognito refuses a prefix with these words in it (its domain rules).
        reserved = [word for word in ("aws", "amazon", "cognito") if value and word in value]
        if reserved:
            raise ValueError(f"a Cognito domain prefix may not contain {', '.join(reserved)}: {value!r}")
        return value

    @model_validator(mode="after")
    def _default_is_allowed(self) -> ImagegenConfig:
        if self.default_model not in self.allowed_models:
            raise ValueError(
                f"defaultModel {self.default_model} is not one of allowedModels ({', '.join(self.allowed_models)})"
            )
        return self

    @model_validator(mode="after")
    def _links_last_no_longer_than_images(self) -> ImagegenConfig:
        if self.link_lifetime_days is not None and self.link_lifetime_days > self.image_expiration_days:
            raise ValueError(
                f"linkLifetimeDays {self.link_lifetime_days} is longer than imageExpirationDays "
                f"{self.image_expiration_days}: a link would outlast its image"
            )
        return self

    @property
    def link_lifetime_seconds(self) -> int:
        """How long a minted link lasts: ``linkLifetimeDays``, by default ``imageExpirationDays``."""
        return (self.link_lifetime_days or self.image_expiration_days) * 24 * 3600

    @classmethod
    def from_context(cls, node: Node) -> ImagegenConfig:
        """Read every ``imagegen:*`` key from the construct tree's context (absent keys: defaults)."""
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            key = PREFIX + (field.alias or name)
            value = node.try_get_context(key)
            if value is not None:
                values[field.alias or name] = value
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ImagegenConfig:
        """Validate context values (keys without the ``imagegen:`` prefix); a bad value is one error
        that names the key."""
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            problems = "; ".join(
                f"{PREFIX}{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ValueError(f"Invalid CDK context: {problems}") from None

    # -- the models against the facts -----------------------------------------------------------

    def check_models(self, *, region: str, day: date) -> tuple[str, ...]:
        """Fail (ValueError naming the key, the model, the fact and the alternatives) when the default or
        an allowed model is past its end of life on ``day`` or not offered in ``region``; return the
        warnings of legacy ones."""
        problems: list[str] = []
        warnings: list[str] = []
        for key, models in (("defaultModel", (self.default_model,)), ("allowedModels", self.allowed_models)):
            for model in models:
                judged = standing(model, day=day, region=region)
                if judged.problem:
                    problems.append(f"{PREFIX}{key}: {judged.problem}")
                elif judged.warning and key == "allowedModels":
                    warnings.append(f"{PREFIX}{key}: {judged.warning}")
        if problems:
            raise ValueError(f"Invalid CDK context for a stack in {region} on {day}: {'; '.join(problems)}")
        return tuple(warnings)

    def model_offers(self, region: str) -> tuple[Offer, ...]:
        """How each allowed model is invoked from ``region`` (model id or inference profile); call
        :meth:`check_models` first (a model not offered there raises ValueError)."""
        offers = []
        for model in self.allowed_models:
            offer = model_facts(model).offer_in(region)
            if offer is None:
                raise ValueError(f"{PREFIX}allowedModels: {model} is not offered in {region}")
            offers.append(offer)
        return tuple(offers)

    @property
    def marketplace_models(self) -> tuple[str, ...]:
        """The allowed models sold through AWS Marketplace (their first call subscribes the account)."""
        return tuple(m for m in self.allowed_models if model_facts(m).marketplace)

    # -- derived values -------------------------------------------------------------------------

    @property
    def allowed_model_ids(self) -> tuple[str, ...]:
        """The Bedrock model ids of the allowed models (what IAM lets the functions invoke)."""
        return tuple(BEDROCK_MODEL_IDS[m] for m in self.allowed_models)

    def handler_settings(self, *, images_bucket: str, index_table: str = "") -> Settings:
        """The handlers' settings of this deployment (``image_pipeline.core.settings``)."""
        return Settings(
            images_bucket=images_bucket,
            index_table=index_table,
            image_expiration_days=self.image_expiration_days,
            share_cache=self.share_cache,
            daily_spend_limit_usd=self.daily_spend_limit_usd,
            default_model=self.default_model,
            allowed_models=self.allowed_models,
            max_images_per_request=self.max_images_per_request,
            presign_expiry_seconds=self.presign_expiry_seconds,
            map_max_concurrency=self.map_max_concurrency,
            bedrock_max_attempts=self.bedrock_max_attempts,
        )

    def lambda_environment(self, *, images_bucket: str, index_table: str = "") -> dict[str, str]:
        """The environment every handler reads, written by ``image_pipeline.core.settings``."""
        return handler_environment(
            self.handler_settings(images_bucket=images_bucket, index_table=index_table),
            log_level=self.log_level,
        )


def _is_origin(value: str) -> bool:
    scheme, sep, rest = value.partition("://")
    return bool(sep) and scheme in ("https", "http") and bool(rest) and "/" not in rest and " " not in rest
