"""The request contract: one pydantic model for the API, the console and EventBridge.

``ImageRequest`` checks what every model shares (types, ranges, safe storage names). The model's
own limits (prompt length, sizes, seeds, options it does not take) are checked by its adapter in
``image_pipeline.models``; :func:`image_pipeline.core.planning.check_request` runs both and turns every
problem into one :class:`~image_pipeline.contract.errors.InvalidRequest` that names each field to change.

The model is strict, as API Gateway's JSON schema (generated from it: ``stacks/request_schema.py``)
is: a number is a JSON number, not text (``"4"``) or a boolean, and an integer field takes no fraction
(``4.0`` is a number, not an integer, in JSON Schema draft 4, which API Gateway uses). Query strings are
text by nature: :func:`request_from_query` reads the number fields' values as JSON numbers first. Every
refusal of a field says what the field takes and what it was given (``must be ..., not ...``), the
same words on every entry point.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import typing
import unicodedata
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from image_pipeline.contract.errors import FieldError, InvalidRequest

MAX_IMAGES = 40
MAX_PROMPT_CHARS = 10_000
#: The largest seed any model takes (Stable Image Core and Ultra: 0 to 4294967295); each model's own
#: range is checked by its adapter.
MAX_SEED = 4_294_967_295

# Patterns are evaluated by API Gateway (ECMA 262), jsonschema and pydantic (Python's re): they must mean
# the same in each. Python's (and Java's) ``$`` also matches before a final newline, ECMA 262's does not,
# so a pattern ends with "nothing follows", which every engine reads alike.
_END = r"(?![\s\S])"
_NAME = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}"
#: Control characters (Unicode category Cc) but tab, newline and carriage return: refused in text.
_CONTROL = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
TEXT_PATTERN = rf"^[^{_CONTROL}]*{_END}"
MODEL_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._:/-]{{0,99}}{_END}"
ASPECT_PATTERN = rf"^[1-9][0-9]?:[1-9][0-9]?{_END}"
STYLE_PATTERN = rf"^[A-Za-z0-9_-]{{1,64}}{_END}"
FOLDER_PATTERN = rf"^{_NAME}(?:/{_NAME}){{0,9}}/?{_END}"
PREFIX_PATTERN = rf"^(?![\s\S]*\.\.){_NAME}{_END}"
IDEMPOTENCY_KEY_PATTERN = rf"^[A-Za-z0-9_-]{{1,64}}{_END}"
#: An http(s) URL without spaces or control characters; where it may point is checked by
#: :func:`image_pipeline.core.webhooks.webhook_problem` (https and a public address deployed).
WEBHOOK_PATTERN = rf"^[Hh][Tt][Tt][Pp][Ss]?://[^\s{_CONTROL}]{{1,2040}}{_END}"
MAX_WEBHOOK_CHARS = 2048
#: What a webhook may be told about: the job's end, and each image.
WebhookEvent = Literal["completed", "image"]

#: What a request may do to a stored image (``source_image``) instead of drawing from text alone.
Operation = Literal[
    "variation", "upscale", "remove-background", "search-and-replace", "inpaint", "outpaint", "style-transfer"
]
OPERATIONS: tuple[str, ...] = typing.get_args(Operation)
#: The three upscale services (fast: 4x; conservative and creative: to about 4K).
UpscaleMode = Literal["fast", "conservative", "creative"]
#: S3's longest key.
MAX_KEY_CHARS = 1024
#: A key of an image this deployment stored: ``<namespace>/<folder>/<job id>/<name>.png``
#: (``core/keys.py``); no ``..``, no empty folder. Whose it is is checked against the caller.
IMAGE_KEY_PATTERN = rf"^(?![\s\S]*\.\.)(?![\s\S]*//)[0-9a-f]{{12}}/[A-Za-z0-9._/-]{{1,1000}}\.png{_END}"
#: Outpaint's ``left``/``right``/``up``/``down``: "Range 0 to 2000" pixels (Stability AI Image Services, Outpaint).
MAX_OUTPAINT = 2000

#: Operations that make one image unless ``count`` says otherwise.
_ONE_BY_DEFAULT = frozenset({"upscale", "remove-background"})

_TEXT_RULE = "without control characters (tab and newlines are allowed)"
#: What each field takes: every refusal of the field says this ("<field>: must be <this>, not <given>").
ACCEPTS: dict[str, str] = {
    "prompt": f"text of 1 to {MAX_PROMPT_CHARS} characters, {_TEXT_RULE}",
    "negative_prompt": f"text of at most {MAX_PROMPT_CHARS} characters, {_TEXT_RULE}",
    "count": f"an integer from 1 to {MAX_IMAGES}",
    "model": "a model id of GET /models (letters, digits, '.', '_', ':', '/' and '-', at most 100)",
    "width": "an integer from 64 to 4096",
    "height": "an integer from 64 to 4096",
    "aspect_ratio": "a ratio of two integers from 1 to 99, like 16:9",
    "quality": "standard or premium",
    "cfg_scale": "a number from 1.0 to 10.0",
    "seed": f"an integer from 0 to {MAX_SEED}",
    "style": "a style name of 1 to 64 letters, digits, '_' or '-'",
    "output_folder": (
        "a relative folder like 000/111 of at most 200 characters: 1 to 10 names separated by '/', each "
        "1 to 64 letters, digits, '.', '_' or '-' starting with a letter, digit or '_'"
    ),
    "file_name_prefix": (
        "1 to 64 letters, digits, '.', '_' or '-' starting with a letter, digit or '_', without '..'"
    ),
    "idempotency_key": "1 to 64 letters, digits, '_' or '-'",
    "webhook": f"an https URL of at most {MAX_WEBHOOK_CHARS} characters, without spaces",
    "webhook_events": 'a list of distinct events, "completed" and/or "image"',
    "cache": "true or false",
    "source_image": (
        "the key of an image this deployment stored for you (a manifest's images[].key, like "
        "0123456789ab/images/<job id>/image-00-42.png)"
    ),
    "operation": "one of " + ", ".join(OPERATIONS),
    "upscale_mode": "fast, conservative or creative",
    "strength": "a number from 0.0 (keep the source) to 1.0 (ignore it)",
    "search_prompt": f"text of 1 to {MAX_PROMPT_CHARS} characters naming what to replace, {_TEXT_RULE}",
    "mask_image": "the key of a black-and-white mask image this deployment stored for you, of the source's size",
    "mask_prompt": f"text of 1 to {MAX_PROMPT_CHARS} characters naming what to repaint, {_TEXT_RULE}",
    "left": f"an integer from 0 to {MAX_OUTPAINT} (pixels to add on the left)",
    "right": f"an integer from 0 to {MAX_OUTPAINT} (pixels to add on the right)",
    "up": f"an integer from 0 to {MAX_OUTPAINT} (pixels to add at the top)",
    "down": f"an integer from 0 to {MAX_OUTPAINT} (pixels to add at the bottom)",
    "style_image": "the key of an image this deployment stored for you, whose style to apply",
    "creativity": "a number from 0.1 to 1.0",
    "grow_mask": "an integer from 0 to 20",
    "style_strength": "a number from 0.0 to 1.0",
    "composition_fidelity": "a number from 0.0 to 1.0",
    "change_strength": "a number from 0.1 to 1.0",
}


def _refused(given: str) -> PydanticCustomError:
    """A refusal found by a validator: what the field was given (the message adds what it takes)."""
    return PydanticCustomError("refused", "{given}", {"given": given})


def _check_text(value: str | None, *, allow_empty: bool) -> str | None:
    if value is None:
        return None
    value = value.strip()
    # Format characters (zero-width space, BOM, bidi controls: category Cf) draw nothing either.
    if not "".join(c for c in value if unicodedata.category(c) != "Cf").strip():
        if allow_empty:
            return None
        raise _refused("only whitespace or invisible characters")
    return value


class ImageRequest(BaseModel):
    """A request for ``count`` images of one prompt from one model."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=False,
        frozen=True,
        strict=True,
        regex_engine="python-re",
        # A prompt, or an operation on a stored image (which operations need a prompt: core/refine.py).
        json_schema_extra={
            "anyOf": [
                {"required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
                {"required": ["source_image"], "properties": {"source_image": {"type": "string"}}},
                {"required": ["operation"], "properties": {"operation": {"type": "string"}}},
            ]
        },
    )

    prompt: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        pattern=TEXT_PATTERN,
        description="What to draw. Required, except for operations on a stored image that take none or may "
        "leave it out. The model's limit applies. No control characters but tab and newlines.",
    )
    negative_prompt: str | None = Field(
        default=None,
        max_length=MAX_PROMPT_CHARS,
        pattern=TEXT_PATTERN,
        description="What to keep out of the image. The model's limit applies.",
    )
    count: int = Field(default=4, ge=1, le=MAX_IMAGES, description="Images to generate, one branch each.")
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=MODEL_PATTERN,
        description="Registry id (e.g. stable-image-core) or Bedrock model id; default from configuration.",
    )
    width: int | None = Field(default=None, ge=64, le=4096, description="Pixels; with height.")
    height: int | None = Field(default=None, ge=64, le=4096, description="Pixels; with width.")
    aspect_ratio: str | None = Field(
        default=None, pattern=ASPECT_PATTERN, description="Such as 1:1 or 16:9; instead of width/height."
    )
    quality: Literal["standard", "premium"] | None = Field(default=None, description="Amazon models only.")
    cfg_scale: float | None = Field(
        default=None, ge=1.0, le=10.0, allow_inf_nan=False, description="Prompt adherence."
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEED,
        description="Seed of the first image; image i gets seed+i. Random when absent. Seeds are returned.",
    )
    style: str | None = Field(
        default=None, max_length=64, pattern=STYLE_PATTERN, description="Nova Canvas style preset."
    )
    output_folder: str = Field(
        default="images",
        min_length=1,
        max_length=200,
        pattern=FOLDER_PATTERN,
        description="Folder of the S3 key, like 000/111: letters, digits, . _ - and /; no '..'.",
    )
    file_name_prefix: str = Field(
        default="image",
        min_length=1,
        max_length=64,
        pattern=PREFIX_PATTERN,
        description="Start of each image's file name: letters, digits, . _ -.",
    )
    idempotency_key: str | None = Field(
        default=None,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Same key, same job: a retried request does not generate again (jobs API).",
    )
    webhook: str | None = Field(
        default=None,
        max_length=MAX_WEBHOOK_CHARS,
        pattern=WEBHOOK_PATTERN,
        description="URL the job's end (and, with webhook_events, each image) is POSTed to, signed as "
        "Standard Webhooks says. https and a public address.",
    )
    webhook_events: list[WebhookEvent] | None = Field(
        default=None,
        min_length=1,
        max_length=2,
        json_schema_extra={"uniqueItems": True},
        description='What the webhook is told: "completed" (default) and/or "image". Needs webhook.',
    )

    cache: bool = Field(
        default=True,
        description="false: never serve an image of this request from the prompt cache (an earlier image "
        "of the same model, parameters and seed); requests without a seed never are.",
    )

    # -- refining a stored image (docs/api.md, "Refining an image"; core/refine.py checks them together)
    source_image: str | None = Field(
        default=None,
        max_length=MAX_KEY_CHARS,
        pattern=IMAGE_KEY_PATTERN,
        description="Key of an image this deployment stored for you (a manifest's images[].key): the image "
        "the operation works on. Never a URL or a bucket. With operation.",
    )
    operation: Operation | None = Field(default=None, description="What to do with source_image.")
    upscale_mode: UpscaleMode | None = Field(
        default=None, description="upscale: fast (4x, default), conservative or creative (to about 4K)."
    )
    strength: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="variation: how far from the source (0 keeps it, 1 ignores it); default 0.35.",
    )
    search_prompt: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        pattern=TEXT_PATTERN,
        description="search-and-replace: what to find and replace with prompt.",
    )
    mask_image: str | None = Field(
        default=None,
        max_length=MAX_KEY_CHARS,
        pattern=IMAGE_KEY_PATTERN,
        description="inpaint: key of a stored black-and-white mask of the source's size (white is repainted).",
    )
    mask_prompt: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        pattern=TEXT_PATTERN,
        description="inpaint: what to repaint, found by the model (instead of mask_image).",
    )
    left: int | None = Field(default=None, ge=0, le=MAX_OUTPAINT, description="outpaint: pixels to add.")
    right: int | None = Field(default=None, ge=0, le=MAX_OUTPAINT, description="outpaint: pixels to add.")
    up: int | None = Field(default=None, ge=0, le=MAX_OUTPAINT, description="outpaint: pixels to add.")
    down: int | None = Field(default=None, ge=0, le=MAX_OUTPAINT, description="outpaint: pixels to add.")
    style_image: str | None = Field(
        default=None,
        max_length=MAX_KEY_CHARS,
        pattern=IMAGE_KEY_PATTERN,
        description="style-transfer: key of a stored image whose style is applied to source_image.",
    )
    creativity: float | None = Field(
        default=None,
        ge=0.1,
        le=1.0,
        allow_inf_nan=False,
        description="upscale conservative/creative (0.1 to 0.5) and outpaint (0.1 to 1.0).",
    )
    grow_mask: int | None = Field(
        default=None, ge=0, le=20, description="inpaint, search-and-replace: pixels to grow the mask by."
    )
    style_strength: float | None = Field(
        default=None, ge=0.0, le=1.0, allow_inf_nan=False, description="style-transfer."
    )
    composition_fidelity: float | None = Field(
        default=None, ge=0.0, le=1.0, allow_inf_nan=False, description="style-transfer."
    )
    change_strength: float | None = Field(
        default=None, ge=0.1, le=1.0, allow_inf_nan=False, description="style-transfer."
    )

    @model_validator(mode="before")
    @classmethod
    def _one_image_by_default(cls, data: Any) -> Any:
        """An upscale or a background removal makes one image unless asked for more (a variation or an
        edit makes ``count`` choices, 4 by default, like a text-to-image request)."""
        if isinstance(data, dict) and "count" not in data and data.get("operation") in _ONE_BY_DEFAULT:
            return {**data, "count": 1}
        return data

    @model_validator(mode="after")
    def _prompt_or_source(self) -> ImageRequest:
        if self.prompt is None and self.source_image is None and self.operation is None:
            raise PydanticCustomError("prompt_missing", "a prompt, or a source_image to work on")
        return self

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str | None) -> str | None:
        if value is None:
            return None
        checked = _check_text(value, allow_empty=False)
        assert checked is not None
        return checked

    @field_validator("search_prompt", "mask_prompt")
    @classmethod
    def _other_prompts(cls, value: str | None) -> str | None:
        if value is None:
            return None
        checked = _check_text(value, allow_empty=False)
        assert checked is not None
        return checked

    @field_validator("negative_prompt")
    @classmethod
    def _negative(cls, value: str | None) -> str | None:
        return _check_text(value, allow_empty=True)

    @field_validator("webhook_events")
    @classmethod
    def _events(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise _refused("a list naming an event twice")
        return value

    @field_validator("output_folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        return value.removesuffix("/")  # the pattern allows one trailing '/'


# -- messages ---------------------------------------------------------------------------------------

_SHOWN_CHARS = 40


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _visible(text: str) -> str:
    """``text`` in double quotes, with what does not print (controls, invisible and odd spaces, lone
    surrogates) escaped, so a trailing newline or a zero-width space shows."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def describe_value(value: Any) -> str:
    """How a message names a value a field was given (``not <this>``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 128 else "an integer of more than 38 digits"
    if isinstance(value, float):
        return (
            repr(value)
            if math.isfinite(value)
            else {"inf": "Infinity", "-inf": "-Infinity"}.get(repr(value), "NaN")
        )
    if isinstance(value, str):
        surrogate = next((i for i, c in enumerate(value) if unicodedata.category(c) == "Cs"), None)
        if surrogate is not None:  # JSON can escape one ("\\ud800"); no text holds one
            return f"text with a lone surrogate (U+{ord(value[surrogate]):04X} at character {surrogate + 1})"
        if len(value) <= _SHOWN_CHARS:
            return _visible(value)
        control = re.search(f"[{_CONTROL}]", value)
        where = f", with U+{ord(control[0]):04X} at character {control.start() + 1}" if control else ""
        return f"text of {len(value)} characters{where}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _field_errors(exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else "request"
        if err["type"] == "prompt_missing":
            field = "prompt"
        takes = ACCEPTS.get(field)
        if err["type"] == "extra_forbidden":
            message = "unknown field (check its spelling; see the API docs for the fields)"
        elif takes is None:
            message = err["msg"]
        elif err["type"] in {"missing", "prompt_missing"}:
            message = f"required: {takes}"
        elif err["type"] == "refused":
            message = f"must be {takes}, not {err['ctx']['given']}"
        else:
            message = f"must be {takes}, not {describe_value(err['input'])}"
        errors.append(FieldError(field, message))
    return errors


def parse_request(raw: Any) -> ImageRequest:
    """Parse a raw JSON value into an :class:`ImageRequest` or raise :class:`InvalidRequest`."""
    if not isinstance(raw, dict):
        raise InvalidRequest([FieldError("request", f"must be a JSON object, not {describe_value(raw)}")])
    # A prompt is required, unless the request works on a stored image (whose operation may take none).
    missing = (
        [FieldError("prompt", f"required: {ACCEPTS['prompt']}")]
        if all(raw.get(name) is None for name in ("prompt", "source_image", "operation"))
        else []
    )
    try:
        request = ImageRequest.model_validate(raw)
    except ValidationError as exc:
        found = _field_errors(exc)
        raise InvalidRequest(missing + [e for e in found if e not in missing]) from None
    if missing:
        raise InvalidRequest(missing)
    return request


# -- query strings ----------------------------------------------------------------------------------

#: A JSON number (RFC 8259), the whole text.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _number_fields() -> frozenset[str]:
    numbers = set()
    for name, info in ImageRequest.model_fields.items():
        types = set(typing.get_args(info.annotation)) or {info.annotation}
        if types & {int, float}:
            numbers.add(name)
    return frozenset(numbers)


#: Fields whose values are numbers (a query string's text is read as a JSON number for these).
NUMBER_FIELDS = _number_fields()


def request_from_query(params: Mapping[str, str]) -> dict[str, Any]:
    """A request from query-string parameters (``GET /images?prompt=...&count=2``).

    Query strings are text by nature, so a number field's value is read as the JSON number it spells
    (``2``, ``7.5``, ``-1``, ``4.0``); anything else stays text, and the request refuses it as it
    refuses the same text in a JSON body (``count=four`` answers like ``{"count": "four"}``), while
    ``count=4.0`` answers like ``{"count": 4.0}``. Other fields are text, as in JSON.
    """
    request: dict[str, Any] = {}
    for name, value in params.items():
        request[name] = value
        if name in NUMBER_FIELDS and _JSON_NUMBER.fullmatch(value):
            # More digits than Python converts: it stays text, and is refused as text.
            with contextlib.suppress(ValueError):
                request[name] = json.loads(value)
    return request
