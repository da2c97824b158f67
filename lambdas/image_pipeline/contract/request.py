"""The request contract: one pydantic model for the API, the console and EventBridge.

``ImageRequest`` checks what every model shares (types, ranges, safe storage names). The model's
own limits (prompt length, sizes, seeds, options it does not take) are checked by its adapter in
``image_pipeline.models``; :func:`image_pipeline.core.planning.check_request` runs both and turns every
problem into one :class:`~image_pipeline.contract.errors.InvalidRequest` that names each field to change.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from image_pipeline.contract.errors import FieldError, InvalidRequest

MAX_IMAGES = 40
MAX_PROMPT_CHARS = 10_000
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_PREFIX = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ASPECT = re.compile(r"^[1-9][0-9]?:[1-9][0-9]?$")


def _check_text(value: str | None, *, allow_empty: bool) -> str | None:
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("contains invalid unicode (a lone surrogate)") from exc
    bad = [c for c in value if unicodedata.category(c) == "Cc" and c not in "\n\t\r"]
    if bad:
        raise ValueError(f"contains control character U+{ord(bad[0]):04X}")
    value = value.strip()
    # Format characters (zero-width space, BOM, bidi controls: category Cf) draw nothing either.
    if not "".join(c for c in value if unicodedata.category(c) != "Cf").strip():
        if allow_empty:
            return None
        raise ValueError("must not be empty or only whitespace")
    return value


class ImageRequest(BaseModel):
    """A request for ``count`` images of one prompt from one model."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, frozen=True)

    prompt: str = Field(
        min_length=1, max_length=MAX_PROMPT_CHARS, description="What to draw. The model's limit applies."
    )
    negative_prompt: str | None = Field(
        default=None, max_length=MAX_PROMPT_CHARS, description="What to keep out of the image."
    )
    count: int = Field(default=4, ge=1, le=MAX_IMAGES, description="Images to generate, one branch each.")
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Registry id (e.g. stable-image-core) or Bedrock model id; default from configuration.",
    )
    width: int | None = Field(default=None, ge=64, le=4096, description="Pixels; with height.")
    height: int | None = Field(default=None, ge=64, le=4096, description="Pixels; with width.")
    aspect_ratio: str | None = Field(
        default=None, pattern=_ASPECT.pattern, description="Such as 1:1 or 16:9; instead of width/height."
    )
    quality: Literal["standard", "premium"] | None = Field(default=None, description="Amazon models only.")
    cfg_scale: float | None = Field(default=None, ge=1.0, le=10.0, description="Prompt adherence.")
    seed: int | None = Field(
        default=None,
        ge=0,
        le=4_294_967_294,
        description="Seed of the first image; image i gets seed+i. Random when absent. Seeds are returned.",
    )
    style: str | None = Field(default=None, max_length=64, description="Nova Canvas style preset.")
    output_folder: str = Field(
        default="images",
        min_length=1,
        max_length=200,
        description="Folder of the S3 key, like 000/111: letters, digits, . _ - and /; no '..'.",
    )
    file_name_prefix: str = Field(
        default="image",
        min_length=1,
        max_length=64,
        pattern=_PREFIX.pattern,
        description="Start of each image's file name: letters, digits, . _ -.",
    )
    idempotency_key: str | None = Field(
        default=None,
        pattern=_IDEMPOTENCY_KEY.pattern,
        description="Same key, same job: a retried request does not generate again (jobs API).",
    )

    @field_validator("count", "width", "height", "seed", "cfg_scale", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        # pydantic's lax numbers take true as 1; the API's JSON schema (and users) do not.
        if isinstance(value, bool):
            raise ValueError("must be a number, not true or false")
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        checked = _check_text(value, allow_empty=False)
        assert checked is not None
        return checked

    @field_validator("negative_prompt")
    @classmethod
    def _negative(cls, value: str | None) -> str | None:
        return _check_text(value, allow_empty=True)

    @field_validator("output_folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        if value.startswith("/") or value.startswith("\\"):
            raise ValueError("must be a relative path (no leading '/')")
        if "\\" in value:
            raise ValueError("use '/' to separate folders, not '\\'")
        parts = value.rstrip("/").split("/")
        if len(parts) > 10:
            raise ValueError("at most 10 folder levels")
        for part in parts:
            if part in ("", ".", ".."):
                raise ValueError("empty, '.' and '..' folder names are not allowed")
            if not _SEGMENT.match(part) or len(part) > 64:
                raise ValueError(
                    f"folder name {part[:70]!r} may only use letters, digits, '.', '_' and '-' "
                    "(at most 64 characters, not starting with '.' or '-')"
                )
        return "/".join(parts)

    @field_validator("file_name_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if ".." in value:
            raise ValueError("must not contain '..'")
        return value


def _field_errors(exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "request"
        message = err["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            message = "unknown field (check its spelling; see the API docs for the fields)"
        errors.append(FieldError(loc, message))
    return errors


def parse_request(raw: Any) -> ImageRequest:
    """Parse a raw JSON value into an :class:`ImageRequest` or raise :class:`InvalidRequest`."""
    if not isinstance(raw, dict):
        raise InvalidRequest([FieldError("request", "must be a JSON object")])
    try:
        return ImageRequest.model_validate(raw)
    except ValidationError as exc:
        raise InvalidRequest(_field_errors(exc)) from None
