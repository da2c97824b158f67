"""The InvokeModel bodies Bedrock accepts, per model id, from Bedrock's documentation (not our adapters).

The rules are JSON Schemas (draft 2020-12), one file per model id in a schema directory: by default
the repository's ``tests/schemas/bedrock`` (transcribed from the AWS documentation, each with its
``x-source`` URLs and the day they were read; see its README), or ``IMAGEGEN_BEDROCK_SCHEMA_DIR``, or
the directory the server is given. The file of model id ``stability.sd3-5-large-v1:0`` is
``stability.sd3-5-large-v1_0.json`` (``:`` becomes ``_``). Besides the schema proper, each file's
``x-constraints`` are enforced, whatever their ``status``: what JSON Schema cannot say (the pixel count,
sides, aspect ratio and format of a base64 image; Nova Canvas's size rules: 320-4096 a side, multiples of
16, fewer than 4,194,304 pixels, 1:4 to 4:1; Titan's list of sizes, checked when a body gives a width or
a height, since the documented default 1408x1408 is not in the list). ``x-unconfirmed`` schema patches
are applied only when asked (``unconfirmed=True``): they are readings no AWS page confirmed.

Without the directory (an install without the repository) bodies are not checked: the server says so
once and answers every well-formed JSON object.

How a refusal is worded. Bedrock checks bodies with a JSON-schema validator whose messages are those of
the everit-org/json-schema library, and prefixes/suffixes them: ``Malformed input request: <violations>,
please reformat your input and try again.`` Violations are ``<JSON pointer>: <problem>``, several run
together with no separator. Forms **observed** from Bedrock in issue threads:

* ``#: required key [prompt] not found`` (BerriAI/litellm#6722, stable-image-ultra);
* ``#: extraneous key [textGenerationConfig] is not permitted`` (aws-samples/serverless-pdf-chat#35;
  two in a row in langgenius/dify#3326);
* ``#/stopSequences: expected type: JSONArray, found: String`` (langgenius/dify#3326);
* ``#/messages/1/content: expected minimum item count: 1, found: 0`` (quadratichq/quadratic#2718).

Forms **not observed** from Bedrock, written as that library words them (its source):
``-1 is not greater or equal to 0``, ``5 is not less or equal to 4``, ``expected minLength: 1, actual: 0``,
``expected maxLength: 512, actual: 600``, ``7:3 is not a valid enum value`` (also used for ``const``),
``100 is not a multiple of 16``, ``property [conditionImage] is required`` (dependentRequired), ``no
subschema matched out of the total 4 subschemas`` (anyOf). The ``x-constraints`` refusals have no
documented or observed wording at all: their violations are this server's own (pointer and rule, in the
documentation's words where it gives the rule in words), in the same ``Malformed input request`` frame,
and are checked only once the schema proper passes.

The Stability image services are reported to answer some bad bodies with the provider's JSON as the
message instead (``{"detail":"Invalid field 'text_prompts' ..."}``, aws-samples/amazon-bedrock-client-for-mac#121);
with one example only, the stand-in keeps Bedrock's frame for them too.
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from PIL import Image, UnidentifiedImageError

__all__ = [
    "DEFAULT_SCHEMA_DIR",
    "SCHEMA_DIR_VARIABLE",
    "BodySchemas",
    "schema_file_name",
]

DEFAULT_SCHEMA_DIR = Path(__file__).resolve().parents[2] / "tests" / "schemas" / "bedrock"
"""The repository's schema directory (present in a checkout or an editable install)."""

SCHEMA_DIR_VARIABLE = "IMAGEGEN_BEDROCK_SCHEMA_DIR"
"""An environment variable naming another schema directory."""

_log = logging.getLogger("imagegen.standin")
_said: set[str] = set()
_said_lock = threading.Lock()

_JAVA_TYPES = {
    "string": "String",
    "integer": "Integer",
    "number": "Number",
    "object": "JSONObject",
    "array": "JSONArray",
    "boolean": "Boolean",
    "null": "Null",
}


def _say_once(key: str, message: str) -> None:
    with _said_lock:
        if key in _said:
            return
        _said.add(key)
    _log.warning(message)


def schema_file_name(model_id: str) -> str:
    """The schema file of a model id: ``amazon.nova-canvas-v1:0`` -> ``amazon.nova-canvas-v1_0.json``."""
    return model_id.replace(":", "_") + ".json"


def _java(value: Any) -> str:
    """A JSON value as the validator prints it (Java's ``toString``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, separators=(",", ":"))


def _found(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "BigDecimal"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "JSONArray"
    return "JSONObject"


def _pointer(parts: Any) -> str:
    return "#" + "".join(f"/{part}" for part in parts)


def _resolve(document: Any, pointer: str) -> Any:
    """The part of ``document`` at a JSON pointer (``""`` is the whole document)."""
    node = document
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


_MISSING = object()


def _lookup(body: Any, pointer: str) -> Any:
    try:
        return _resolve(body, pointer)
    except (KeyError, IndexError, TypeError, ValueError):
        return _MISSING


def _violations(error: ValidationError, seen: set[str]) -> Iterator[str]:
    """The everit-worded violations of one jsonschema error (deduplicated through ``seen``)."""
    where = _pointer(error.absolute_path)
    kind, rule, value = error.validator, error.validator_value, error.instance
    lines: list[str] = []
    if kind == "required" and isinstance(value, dict):
        lines = [f"{where}: required key [{key}] not found" for key in rule if key not in value]
    elif kind == "additionalProperties" and isinstance(value, dict):
        known = set(error.schema.get("properties", {}))
        lines = [f"{where}: extraneous key [{key}] is not permitted" for key in value if key not in known]
    elif kind == "type":
        expected = rule if isinstance(rule, str) else rule[0]
        lines = [f"{where}: expected type: {_JAVA_TYPES.get(expected, expected)}, found: {_found(value)}"]
    elif kind == "minimum":
        lines = [f"{where}: {_java(value)} is not greater or equal to {_java(rule)}"]
    elif kind == "maximum":
        lines = [f"{where}: {_java(value)} is not less or equal to {_java(rule)}"]
    elif kind == "exclusiveMinimum":
        lines = [f"{where}: {_java(value)} is not greater than {_java(rule)}"]
    elif kind == "exclusiveMaximum":
        lines = [f"{where}: {_java(value)} is not less than {_java(rule)}"]
    elif kind == "multipleOf":
        lines = [f"{where}: {_java(value)} is not a multiple of {_java(rule)}"]
    elif kind in ("minLength", "maxLength"):
        lines = [f"{where}: expected {kind}: {rule}, actual: {len(value)}"]
    elif kind in ("enum", "const"):
        lines = [f"{where}: {_java(value)} is not a valid enum value"]
    elif kind == "dependentRequired" and isinstance(value, dict):
        lines = [
            f"{where}: property [{needed}] is required"
            for key, needs in rule.items()
            if key in value
            for needed in needs
            if needed not in value
        ]
    elif kind == "anyOf":
        lines = [f"{where}: no subschema matched out of the total {len(rule)} subschemas"]
    elif kind == "oneOf":
        lines = [f"{where}: subschemas matched instead of one"]
    elif kind in ("minItems", "maxItems"):
        word = "minimum" if kind == "minItems" else "maximum"
        lines = [f"{where}: expected {word} item count: {rule}, found: {len(value)}"]
    elif kind == "pattern":
        lines = [f"{where}: string [{value}] does not match pattern {rule}"]
    else:
        lines = [f"{where}: {error.message}"]
    for line in lines:
        if line not in seen:
            seen.add(line)
            yield line


def _apply_patch(schema: dict[str, Any], patch: dict[str, Any]) -> None:
    target = _resolve(schema, patch["pointer"])
    if isinstance(target, dict):
        target.update(copy.deepcopy(patch["merge"]))


class _Model:
    """One model's schema: the validator and the x-constraints."""

    def __init__(self, schema: dict[str, Any], *, unconfirmed: bool) -> None:
        schema = copy.deepcopy(schema)
        if unconfirmed:
            for claim in schema.get("x-unconfirmed", []):
                patches = claim.get("schema_patch")
                for patch in patches if isinstance(patches, list) else [patches] if patches else []:
                    _apply_patch(schema, patch)
        Draft202012Validator.check_schema(schema)
        self.validator = Draft202012Validator(schema)
        self.constraints: list[dict[str, Any]] = list(schema.get("x-constraints", []))

    def check(self, body: Any) -> list[str]:
        seen: set[str] = set()
        found = [line for error in self.validator.iter_errors(body) for line in _violations(error, seen)]
        if found:
            return found
        return [line for rule in self.constraints for line in _constraint(rule, body)]


def _constraint(rule: dict[str, Any], body: Any) -> list[str]:
    kind = rule.get("kind")
    if kind == "image":
        return _image_rule(rule, body)
    if kind == "dimensions":
        return _dimensions_rule(rule, body)
    if kind == "allowed_pairs":
        return _pairs_rule(rule, body)
    if kind == "text_length":
        text = _lookup(body, rule["field"])
        if isinstance(text, str) and len(text) > rule["max_chars"]:
            return [f"#{rule['field']}: expected maxLength: {rule['max_chars']}, actual: {len(text)}"]
        return []
    if kind == "at_least_one_nonzero":
        values = [_lookup(body, field) for field in rule["fields"]]
        if not any(isinstance(v, int | float) and not isinstance(v, bool) and v for v in values):
            names = ", ".join(field.lstrip("/") for field in rule["fields"])
            return [f"#: at least one of {names} must be greater than 0"]
        return []
    return []  # note, output_dimensions, mask_or_alpha: informational


def image_size(encoded: Any) -> tuple[str, int, int] | None:
    """The format (``jpeg``, ``png``, ``webp``, ...) and size of a base64 image, or None."""
    if not isinstance(encoded, str):
        return None
    try:
        data = base64.b64decode(encoded, validate=True)
        with Image.open(io.BytesIO(data)) as image:
            return (image.format or "").lower(), image.width, image.height
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError):
        return None


def _image_rule(rule: dict[str, Any], body: Any) -> list[str]:
    field = rule["field"]
    encoded = _lookup(body, field)
    if encoded is _MISSING:
        return []
    where = f"#{field}"
    found = image_size(encoded)
    if found is None:
        return [f"{where}: the value is not a base64-encoded image"]
    fmt, width, height = found
    formats = rule.get("formats")
    problems = []
    if formats and fmt not in formats:
        problems.append(f"{where}: image format {fmt} is not one of {', '.join(formats)}")
    limits = (
        ("min_side", min(width, height), "each side must be at least {} pixels", lambda v, b: v >= b),
        ("min_width", width, "the width must be at least {} pixels", lambda v, b: v >= b),
        ("max_width", width, "the width must be at most {} pixels", lambda v, b: v <= b),
        ("min_height", height, "the height must be at least {} pixels", lambda v, b: v >= b),
        ("max_height", height, "the height must be at most {} pixels", lambda v, b: v <= b),
        ("min_pixels", width * height, "the image must have at least {} pixels", lambda v, b: v >= b),
        ("max_pixels", width * height, "the image must have at most {} pixels", lambda v, b: v <= b),
    )
    for key, value, text, ok in limits:
        if key in rule and not ok(value, rule[key]):
            problems.append(f"{where}: {width}x{height}: {text.format(rule[key])}")
    ratio = width / height
    low, high = rule.get("aspect_ratio_min"), rule.get("aspect_ratio_max")
    if (low is not None and ratio < low) or (high is not None and ratio > high):
        problems.append(
            f"{where}: {width}x{height}: the aspect ratio (width/height) must be from {low:g} to {high:g}"
        )
    return problems


def _dimensions_rule(rule: dict[str, Any], body: Any) -> list[str]:
    width = _lookup(body, rule["width"])
    height = _lookup(body, rule["height"])
    width = rule.get("default_width") if width is _MISSING else width
    height = rule.get("default_height") if height is _MISSING else height
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (width, height)):
        return []
    assert isinstance(width, int) and isinstance(height, int)
    problems = []
    for pointer, value in ((rule["width"], width), (rule["height"], height)):
        low, high, step = rule.get("min_side"), rule.get("max_side"), rule.get("multiple_of")
        if (low is not None and value < low) or (high is not None and value > high):
            problems.append(f"#{pointer}: {value}: each side must be between {low}-{high} pixels, inclusive")
        elif step and value % step:
            problems.append(f"#{pointer}: {value}: each side must be evenly divisible by {step}")
    if problems:
        return problems
    config = "#" + rule["width"].rsplit("/", 1)[0]
    limit = rule.get("max_pixels_exclusive")
    if limit is not None and width * height >= limit:
        problems.append(f"{config}: {width}x{height}: the total pixel count must be less than {limit:,}")
    low, high = rule.get("aspect_ratio_min"), rule.get("aspect_ratio_max")
    ratio = width / height
    if (low is not None and ratio < low) or (high is not None and ratio > high):
        problems.append(f"{config}: {width}x{height}: the aspect ratio must be between 1:4 and 4:1")
    return problems


def _pairs_rule(rule: dict[str, Any], body: Any) -> list[str]:
    given = [_lookup(body, field) for field in rule["fields"]]
    if all(value is _MISSING for value in given):
        return []  # the documented default (1408x1408) is not itself in the list: see the module docstring
    values = [d if v is _MISSING else v for v, d in zip(given, rule["defaults"], strict=True)]
    if values in rule["pairs"]:
        return []
    where = "#" + rule["fields"][0].rsplit("/", 1)[0]
    size = "x".join(_java(v) for v in values)
    return [f"{where}: {size} is not one of the permissible sizes (width x height)"]


class BodySchemas:
    """The schema directory: ``check(model_id, body)`` lists what Bedrock would refuse in a body.

    ``directory`` None means ``IMAGEGEN_BEDROCK_SCHEMA_DIR`` or ``DEFAULT_SCHEMA_DIR``. When the
    directory does not exist, ``enabled`` is False and every body passes (said once per process).
    Schemas are read on first use and kept.
    """

    def __init__(self, directory: str | Path | None = None, *, unconfirmed: bool = False) -> None:
        if directory is None:
            directory = os.environ.get(SCHEMA_DIR_VARIABLE) or DEFAULT_SCHEMA_DIR
        self.directory = Path(directory)
        self.unconfirmed = unconfirmed
        self.enabled = self.directory.is_dir()
        self._models: dict[str, _Model | None] = {}
        self._lock = threading.Lock()
        if not self.enabled:
            _say_once(
                f"dir:{self.directory}",
                f"Bedrock stand-in: no schema directory at {self.directory}; InvokeModel bodies are "
                f"not checked (set {SCHEMA_DIR_VARIABLE} or --schema-dir to check them)",
            )

    def has_schema(self, model_id: str) -> bool:
        """True if ``model_id`` has a schema file to check its bodies against."""
        return self._model(model_id) is not None

    def _model(self, model_id: str) -> _Model | None:
        if not self.enabled:
            return None
        with self._lock:
            if model_id in self._models:
                return self._models[model_id]
            path = self.directory / schema_file_name(model_id)
            model = None
            if path.is_file():
                model = _Model(json.loads(path.read_text(encoding="utf-8")), unconfirmed=self.unconfirmed)
            else:
                _say_once(
                    f"file:{path}",
                    f"Bedrock stand-in: no schema {path.name} in {self.directory}; "
                    f"bodies for {model_id} are not checked",
                )
            self._models[model_id] = model
            return model

    def check(self, model_id: str, body: Any) -> list[str]:
        """The violations of ``body`` for ``model_id`` (an empty list: Bedrock would take it)."""
        model = self._model(model_id)
        return model.check(body) if model is not None else []
