"""API Gateway's request model, generated from the one request model (``ImageRequest``).

pydantic writes JSON Schema 2020-12; API Gateway validates request bodies with JSON Schema draft 4.
:func:`draft4_schema` converts the first into the subset of the second that API Gateway accepts:

* ``$ref`` to ``$defs`` is inlined (API Gateway models cannot point into themselves), ``$defs`` dropped;
* ``anyOf [X, {"type": "null"}]`` (an ``Optional`` field) becomes X with ``null`` added to its type,
  so an explicit ``null`` stays valid, as it is for pydantic (an ``enum`` X keeps the ``anyOf``);
* ``const`` becomes a one-value ``enum``; numeric ``exclusiveMinimum``/``exclusiveMaximum`` become the
  draft-4 form (``minimum`` + ``exclusiveMinimum: true``); ``prefixItems`` becomes an ``items`` list;
* keywords draft 4 does not have (``examples``, ``readOnly``, ``deprecated``, ...), formats it does not
  define, and ``default: null`` are dropped;
* a ``pattern`` that only Python understands (named groups, ``\\A``/``\\Z``, inline flags) is an error:
  API Gateway evaluates patterns as ECMA 262 regular expressions. So is a ``$`` anchor: Python's (and
  Java's) ``$`` also matches before a final newline and ECMA 262's does not, so ``^[a-z]+$`` means two
  things; a pattern ends with ``(?![\\s\\S])`` ("nothing follows"), which every engine reads alike.

pydantic's ``strict`` types are what draft 4 says too: ``integer`` is a number without a fraction or
exponent (``4.0`` is not one), and neither ``integer`` nor ``number`` takes text or booleans.

What a schema cannot say (for example "not only whitespace", or a model's own limits) is checked by the
HTTP API function before any execution starts (HTTP 400), and again by the workflow's first step for
input that does not come through the API.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from aws_cdk import aws_apigateway as apigw

DRAFT4 = "http://json-schema.org/draft-04/schema#"

#: Formats defined by draft 4 (others, such as ``uuid`` or ``date``, are dropped).
DRAFT4_FORMATS = frozenset({"date-time", "email", "hostname", "ipv4", "ipv6", "uri"})

#: Keywords kept as they are (after their sub-schemas are converted).
_ANNOTATIONS = ("title", "description")
_VALIDATION = (
    "type",
    "enum",
    "format",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "items",
    "additionalItems",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "properties",
    "additionalProperties",
    "patternProperties",
    "dependencies",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
)
_SUPPORTED = frozenset({*_ANNOTATIONS, *_VALIDATION, "default"})

#: Python-only regular expression syntax (ECMA 262 has none of these).
_PYTHON_ONLY_REGEX = re.compile(r"\(\?P[<=]|\\[AZ]|\(\?[aiLmsux]+[):]|\(\?#")
#: A ``$`` that is an anchor (not escaped by a backslash): its meaning differs between engines.
_DOLLAR_ANCHOR = re.compile(r"(?<!\\)(?:\\\\)*\$")


class SchemaConversionError(ValueError):
    """The pydantic schema uses something API Gateway's draft-4 validator cannot express."""


def draft4_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The draft-4 form of a pydantic ``model_json_schema()`` (the input is not modified)."""
    definitions = dict(schema.get("$defs", {}))
    converted = _convert(copy.deepcopy(dict(schema)), definitions, ())
    return {"$schema": DRAFT4, **converted}


def _resolve_ref(ref: str, definitions: Mapping[str, Any], seen: tuple[str, ...]) -> tuple[str, Any]:
    prefix = "#/$defs/"
    if not ref.startswith(prefix):
        raise SchemaConversionError(f"only local $defs references can be inlined, not {ref!r}")
    name = ref[len(prefix) :]
    if name in seen:
        raise SchemaConversionError(f"{name} refers to itself: a recursive model cannot be inlined")
    if name not in definitions:
        raise SchemaConversionError(f"{ref} is not in $defs")
    return name, definitions[name]


def _convert(node: Any, definitions: Mapping[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, bool):  # true/false schemas (additionalProperties: false)
        return node
    if not isinstance(node, dict):
        raise SchemaConversionError(f"a schema must be an object or a boolean, not {node!r}")

    if "$ref" in node:
        name, target = _resolve_ref(node.pop("$ref"), definitions, seen)
        inlined = _convert(copy.deepcopy(target), definitions, (*seen, name))
        # Keywords beside the $ref (pydantic puts a field's description there) win.
        node = {**inlined, **_convert(node, definitions, seen)}
        return node

    node = _nullable_any_of(node, definitions, seen)

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "const":
            out["enum"] = [value]
        elif key == "prefixItems":
            out["items"] = [_convert(item, definitions, seen) for item in value]
            if "items" in node:
                out["additionalItems"] = _convert(node["items"], definitions, seen)
        elif key == "items":
            if "prefixItems" not in node:
                out["items"] = _convert_items(value, definitions, seen)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            _exclusive_bound(out, key, value)
        elif key in ("properties", "patternProperties"):
            out[key] = {name: _convert(sub, definitions, seen) for name, sub in value.items()}
        elif key in ("additionalProperties", "additionalItems", "not"):
            out[key] = _convert(value, definitions, seen)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_convert(sub, definitions, seen) for sub in value]
        elif key == "dependencies":
            out[key] = {
                name: list(dep) if isinstance(dep, list) else _convert(dep, definitions, seen)
                for name, dep in value.items()
            }
        elif key == "format":
            if value in DRAFT4_FORMATS:
                out[key] = value
        elif key == "pattern":
            out[key] = _check_pattern(value)
        elif key == "default":
            if value is not None:
                out[key] = value
        elif key == "type":
            out[key] = _dedupe(value) if isinstance(value, list) else value
        elif key in _SUPPORTED:
            out[key] = value
        # anything else ($defs, $schema, examples, readOnly, deprecated, discriminator, ...) is dropped
    if "type" in out and isinstance(out["type"], list) and len(out["type"]) == 1:
        out["type"] = out["type"][0]
    return out


def _convert_items(value: Any, definitions: Mapping[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(value, list):
        return [_convert(item, definitions, seen) for item in value]
    return _convert(value, definitions, seen)


def _exclusive_bound(out: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, bool):  # already draft 4
        out[key] = value
        return
    bound = "minimum" if key == "exclusiveMinimum" else "maximum"
    out[bound] = value
    out[key] = True


def _check_pattern(pattern: str) -> str:
    if _PYTHON_ONLY_REGEX.search(pattern):
        raise SchemaConversionError(
            f"pattern {pattern!r} uses Python-only syntax; API Gateway needs an ECMA 262 pattern"
        )
    if _DOLLAR_ANCHOR.search(pattern):
        raise SchemaConversionError(
            f"pattern {pattern!r} anchors with $, which Python and Java also match before a final newline "
            "and ECMA 262 does not; end it with (?![\\s\\S]) instead"
        )
    return pattern


def _dedupe(types: list[str]) -> list[str]:
    return list(dict.fromkeys(types))


def _nullable_any_of(node: dict[str, Any], definitions: Mapping[str, Any], seen: tuple[str, ...]) -> dict:
    """``anyOf [X, {"type": "null"}]`` -> X that also accepts null (other keywords of the node win)."""
    branches = node.get("anyOf")
    if not isinstance(branches, list):
        return node
    null = {"type": "null"}
    others = [b for b in branches if b != null]
    if len(others) == len(branches) or len(others) != 1:
        return node  # no null branch, or a real union: keep anyOf (draft 4 has it)
    branch = _convert(copy.deepcopy(others[0]), definitions, seen)
    if "type" not in branch:
        return node  # e.g. an untyped branch: anyOf [X, null] is valid draft 4 as it is
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if "enum" in branch:
        # An enum would need a null member, which CloudFormation templates written by the CDK drop:
        # keep the draft-4 anyOf instead.
        return {"anyOf": [branch, null], **rest}
    types = branch["type"] if isinstance(branch["type"], list) else [branch["type"]]
    branch["type"] = _dedupe([*types, "null"])
    return {**branch, **rest}


# -- CDK ------------------------------------------------------------------------------------------

_CDK_NAMES = {
    "$schema": "schema",
    "multipleOf": "multiple_of",
    "exclusiveMaximum": "exclusive_maximum",
    "exclusiveMinimum": "exclusive_minimum",
    "maxLength": "max_length",
    "minLength": "min_length",
    "additionalItems": "additional_items",
    "maxItems": "max_items",
    "minItems": "min_items",
    "uniqueItems": "unique_items",
    "maxProperties": "max_properties",
    "minProperties": "min_properties",
    "additionalProperties": "additional_properties",
    "patternProperties": "pattern_properties",
    "allOf": "all_of",
    "anyOf": "any_of",
    "oneOf": "one_of",
}
_SCALARS = frozenset(
    {
        "title",
        "description",
        "enum",
        "default",
        "format",
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxProperties",
        "minProperties",
        "required",
    }
)


def _cdk_type(name: str) -> apigw.JsonSchemaType:
    try:
        return apigw.JsonSchemaType[name.upper()]
    except KeyError:
        raise SchemaConversionError(f"unknown JSON schema type {name!r}") from None


def to_cdk_json_schema(schema: Mapping[str, Any] | bool) -> apigw.JsonSchema:
    """A draft-4 schema (from :func:`draft4_schema`) as the CDK's typed ``JsonSchema``."""
    if isinstance(schema, bool):
        raise SchemaConversionError("a boolean schema is only allowed as additionalProperties/Items")
    kwargs: dict[str, Any] = {}
    for key, value in schema.items():
        name = _CDK_NAMES.get(key, key)
        if key == "$schema":
            if value != DRAFT4:
                raise SchemaConversionError(f"API Gateway models are draft 4, not {value!r}")
            kwargs[name] = apigw.JsonSchemaVersion.DRAFT4
        elif key == "type":
            kwargs[name] = [_cdk_type(t) for t in value] if isinstance(value, list) else _cdk_type(value)
        elif key in ("properties", "patternProperties"):
            kwargs[name] = {k: to_cdk_json_schema(v) for k, v in value.items()}
        elif key in ("additionalProperties", "additionalItems"):
            kwargs[name] = value if isinstance(value, bool) else to_cdk_json_schema(value)
        elif key == "items":
            kwargs[name] = (
                [to_cdk_json_schema(v) for v in value]
                if isinstance(value, list)
                else to_cdk_json_schema(value)
            )
        elif key in ("allOf", "anyOf", "oneOf"):
            kwargs[name] = [to_cdk_json_schema(v) for v in value]
        elif key == "not":
            kwargs[name] = to_cdk_json_schema(value)
        elif key == "dependencies":
            kwargs[name] = {k: v if isinstance(v, list) else to_cdk_json_schema(v) for k, v in value.items()}
        elif key in _SCALARS:
            kwargs[name] = value
        else:
            raise SchemaConversionError(f"no CDK JsonSchema field for keyword {key!r}")
    return apigw.JsonSchema(**kwargs)


def image_request_schema() -> dict[str, Any]:
    """The draft-4 schema of ``ImageRequest``: what ``POST /images`` and ``POST /jobs`` accept."""
    from image_pipeline.contract.request import ImageRequest

    return draft4_schema(ImageRequest.model_json_schema())
