"""The API's request model is generated from ``ImageRequest`` and says what pydantic says, in draft 4."""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

import aws_cdk as cdk
import pytest
from aws_cdk import aws_apigateway as apigw
from aws_cdk.assertions import Template
from image_pipeline.contract.errors import InvalidRequest
from image_pipeline.contract.request import ImageRequest, parse_request
from image_pipeline.core.planning import check_request
from image_pipeline.core.settings import Settings
from jsonschema import Draft4Validator
from pydantic import BaseModel, Field, ValidationError

from imagegen.testing.bad_inputs import DISGUISED_BAD_REQUESTS, SCHEMA_BAD_REQUESTS
from stacks.request_schema import (
    DRAFT4,
    SchemaConversionError,
    draft4_schema,
    image_request_schema,
    to_cdk_json_schema,
)
from tests.support import load_event


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return image_request_schema()


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> Draft4Validator:
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


def walk(node: Any) -> list[dict[str, Any]]:
    """Every sub-schema (dict) of a schema."""
    found = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found += walk(value)
    elif isinstance(node, list):
        for value in node:
            found += walk(value)
    return found


def pydantic_accepts(payload: Any) -> bool:
    try:
        ImageRequest.model_validate(payload)
    except ValidationError:
        return False
    return True


# -- the generated model ----------------------------------------------------------------------------


def test_is_a_valid_draft4_schema_for_a_closed_object(schema: dict[str, Any]) -> None:
    Draft4Validator.check_schema(schema)
    assert schema["$schema"] == DRAFT4
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    # a prompt, or a stored image to work on (issue 16: an upscale or a background removal takes no prompt)
    assert [branch["required"] for branch in schema["anyOf"]] == [["prompt"], ["source_image"], ["operation"]]
    assert set(schema["properties"]) == set(ImageRequest.model_fields)


def test_has_nothing_draft4_or_api_gateway_lacks(schema: dict[str, Any]) -> None:
    text = json.dumps(schema)
    for keyword in ("$ref", "$defs", "const", "examples", "prefixItems", "readOnly", "discriminator"):
        assert f'"{keyword}"' not in text
    for sub in walk(schema):
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(sub.get(bound, True), bool)


def test_optional_fields_accept_null_as_pydantic_does(validator: Draft4Validator) -> None:
    for field, info in ImageRequest.model_fields.items():
        if info.is_required() or info.default is not None or field == "prompt":
            continue  # (prompt: optional only with a source_image)
        payload = {"prompt": "a red porsche", field: None}
        assert pydantic_accepts(payload), field
        assert validator.is_valid(payload), field


VALID = [
    load_event("request_minimal"),
    load_event("request_full"),
    load_event("eventbridge_request")["detail"],
    {"prompt": "x", "count": 40, "aspect_ratio": "16:9", "quality": "standard", "cfg_scale": 1},
    {"prompt": "x", "seed": 0, "idempotency_key": "A_b-9", "file_name_prefix": "a.b_c-d"},
    # the edges of strict: an integer is a number for cfg_scale; tab and newlines are text in a prompt;
    # one trailing '/' of a folder; the largest seed any model takes; names at their longest
    {"prompt": "line one\n\tline two\r\n", "negative_prompt": "a\tb", "cfg_scale": 10, "seed": 4_294_967_295},
    {"prompt": "x", "output_folder": "a/b.c/_d-e/", "file_name_prefix": "_" + "a" * 63, "style": "3d-model"},
    {"prompt": "x", "output_folder": "/".join(["n" * 64] * 3), "idempotency_key": "k" * 64},
    {
        "prompt": "x",
        "model": "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.stability.sd3-5-large-v1:0",
    },
    {"prompt": "富士山と桜 🌸, café", "aspect_ratio": "99:1", "count": 1, "width": 64, "height": 4096},
]
INVALID = [
    {},
    {"count": 2},
    {"prompt": ""},
    {"prompt": "x" * 10_001},
    {"prompt": "x", "colour": "red"},
    {"prompt": "x", "count": 0},
    {"prompt": "x", "count": 41},
    {"prompt": "x", "count": "many"},
    {"prompt": "x", "width": 63},
    {"prompt": "x", "height": 4097},
    {"prompt": "x", "aspect_ratio": "wide"},
    {"prompt": "x", "quality": "ultra"},
    {"prompt": "x", "cfg_scale": 11},
    {"prompt": "x", "seed": -1},
    {"prompt": "x", "seed": 4_294_967_296},
    {"prompt": "x", "idempotency_key": "has space"},
    {"prompt": "x", "idempotency_key": "k" * 65},
    {"prompt": "x", "file_name_prefix": "-dash-first"},
    {"prompt": "x", "file_name_prefix": "a..b"},
    {"prompt": "x", "output_folder": "../up"},
    {"prompt": "x", "output_folder": "a/./b"},
    {"prompt": "x", "count": "4"},
    {"prompt": "x", "count": 4.0},
    {"prompt": "x", "cfg_scale": "7"},
    {"prompt": "x", "seed": True},
    {"prompt": "x", "output_folder": "images\n"},
    {"prompt": "x", "file_name_prefix": "image\n"},
    {"prompt": "x", "idempotency_key": "key\n"},
    {"prompt": "x", "style": "PHOTOREALISM\n"},
    {"prompt": "bell \x07"},
    {"prompt": "x", "model": ""},
    {"prompt": 42},
    [{"prompt": "x"}],
    "a red porsche",
]


@pytest.mark.parametrize("payload", VALID, ids=range(len(VALID)))
def test_valid_requests_pass_both(payload: Any, validator: Draft4Validator) -> None:
    assert pydantic_accepts(payload)
    assert validator.is_valid(payload), list(validator.iter_errors(payload))


@pytest.mark.parametrize("payload", INVALID, ids=range(len(INVALID)))
def test_invalid_requests_fail_both(payload: Any, validator: Draft4Validator) -> None:
    assert not pydantic_accepts(payload)
    assert not validator.is_valid(payload)


def test_what_only_the_workflow_can_check_is_left_to_it(validator: Draft4Validator) -> None:
    """Rules a schema cannot state pass API Gateway and are answered by ValidateRequest (400)."""
    for payload in ({"prompt": "   "}, {"prompt": "\u200b"}, {"prompt": "lone \ud800"}):
        assert validator.is_valid(payload)
        assert not pydantic_accepts(payload)


# -- the schema and the request model agree, on every bad input of the catalogue ----------------------
# API Gateway refuses what the generated schema refuses; the HTTP API function, the local server, the
# console and events refuse with check_request (ImageRequest, then the deployment and the model). For the
# catalogue (imagegen.testing.bad_inputs, which the reliability suite sends to every entry point) both
# refuse, except where the refusal needs what a draft-4 schema cannot say:
# * a model's or the deployment's limits: ImageRequest accepts the input, and the schema must too (it is
#   the same for every model), while check_request refuses it;
# * text that is only whitespace or invisible characters, and a lone surrogate (JSON can escape one);
# * NaN and Infinity, which are not JSON: API Gateway refuses the body before any schema is applied.

#: The words of ImageRequest's refusals a draft-4 schema cannot state.
BEYOND_A_SCHEMA = ("not only whitespace or invisible characters", "not text with a lone surrogate")
_CATALOGUE = [(raw, field) for raw, field in SCHEMA_BAD_REQUESTS] + [
    (raw, field) for raw, field, _ in DISGUISED_BAD_REQUESTS
]


def is_json(payload: Any) -> bool:
    try:
        json.dumps(payload, allow_nan=False)
    except ValueError:
        return False
    return True


def contract_errors(payload: Any) -> list[str]:
    """ImageRequest's refusals of ``payload`` (empty when it accepts it)."""
    try:
        parse_request(payload)
    except InvalidRequest as exc:
        return [error.message for error in exc.errors]
    return []


@pytest.mark.parametrize(
    ("payload", "field"), _CATALOGUE, ids=[f"{i:03d}-{f}" for i, (_, f) in enumerate(_CATALOGUE)]
)
def test_the_schema_refuses_what_every_entry_point_refuses(
    validator: Draft4Validator, payload: Any, field: str
) -> None:
    with pytest.raises(InvalidRequest):
        check_request(payload, Settings(images_bucket="b"))
    if not is_json(payload):
        return  # not JSON: API Gateway answers 400 before its validator runs
    refusals = contract_errors(payload)
    schema_errors = [e.message for e in validator.iter_errors(payload)]
    if not refusals:  # a model's or the deployment's limit: the schema is the same for every model
        assert schema_errors == []
    elif all(any(words in refusal for words in BEYOND_A_SCHEMA) for refusal in refusals):
        assert schema_errors == []  # as test_what_only_the_workflow_can_check_is_left_to_it
    else:
        assert schema_errors, f"the schema accepts what ImageRequest refuses: {refusals}"


def test_the_agreement_covers_strict_types_and_names() -> None:
    """The catalogue has the strict cases: numbers as text, booleans and fractions for numbers, and
    control characters at the end of each kind of name."""
    payloads = [raw for raw, _ in _CATALOGUE if isinstance(raw, dict)]
    for name in ("count", "seed", "cfg_scale", "width"):
        assert any(isinstance(p.get(name), str) for p in payloads), name
    assert any(isinstance(p.get("count"), float) and p["count"].is_integer() for p in payloads)
    for name in ("output_folder", "file_name_prefix", "idempotency_key", "style", "model"):
        assert any(str(p.get(name, "")).endswith("\n") for p in payloads), name


def test_cdk_json_schema_renders_the_same_document(schema: dict[str, Any]) -> None:
    stack = cdk.Stack(cdk.App(), "Scratch")
    api = apigw.RestApi(stack, "Api")
    api.root.add_method("GET")
    api.add_model("Request", content_type="application/json", schema=to_cdk_json_schema(schema))
    (model,) = Template.from_stack(stack).find_resources("AWS::ApiGateway::Model").values()
    assert model["Properties"]["Schema"] == schema


# -- the converter on other shapes --------------------------------------------------------------------


class Size(BaseModel):
    width: int = Field(gt=0, description="pixels")
    height: int = Field(gt=0)


class Order(BaseModel):
    size: Size
    backup: Size | None = None
    sizes: list[Size] = []
    kind: Literal["png"] = "png"
    pair: tuple[int, str] | None = None
    mode: Literal["a", "b"] | None = None
    ratio: float = Field(default=1.0, lt=10)


def test_nested_models_are_inlined_and_bounds_become_draft4() -> None:
    original = Order.model_json_schema()
    pristine = copy.deepcopy(original)
    converted = draft4_schema(original)
    assert original == pristine  # the input is not modified
    Draft4Validator.check_schema(converted)
    props = converted["properties"]
    assert props["size"]["properties"]["width"] == {
        "description": "pixels",
        "minimum": 0,
        "exclusiveMinimum": True,
        "title": "Width",
        "type": "integer",
    }
    assert props["backup"]["type"] == ["object", "null"]
    assert props["sizes"]["items"]["required"] == ["width", "height"]
    assert props["kind"]["enum"] == ["png"]
    assert props["pair"]["type"] == ["array", "null"]
    assert [i["type"] for i in props["pair"]["items"]] == ["integer", "string"]
    assert props["mode"]["anyOf"] == [{"enum": ["a", "b"], "type": "string"}, {"type": "null"}]
    assert props["ratio"]["maximum"] == 10 and props["ratio"]["exclusiveMaximum"] is True

    validator = Draft4Validator(converted)
    assert validator.is_valid({"size": {"width": 1, "height": 1}, "backup": None, "mode": None})
    assert not validator.is_valid({"size": {"width": 0, "height": 1}})
    assert not validator.is_valid({"size": {"width": 1, "height": 1}, "mode": "c"})
    assert not validator.is_valid({"size": {"width": 1, "height": 1}, "pair": [1, 2]})


class Node(BaseModel):
    children: list[Node] = []


def test_recursive_models_cannot_be_inlined() -> None:
    with pytest.raises(SchemaConversionError, match="refers to itself"):
        draft4_schema(Node.model_json_schema())


def test_python_only_patterns_are_rejected() -> None:
    with pytest.raises(SchemaConversionError, match="ECMA 262"):
        draft4_schema({"type": "string", "pattern": r"^(?P<word>\w+)\Z"})


@pytest.mark.parametrize("pattern", [r"^[a-z]+$", r"^(a|b$)", r"^a\\$"])
def test_dollar_anchors_are_rejected(pattern: str) -> None:
    """Python's and Java's ``$`` match before a final newline, ECMA 262's does not."""
    with pytest.raises(SchemaConversionError, match=r"\(\?!\[\\s\\S\]\)"):
        draft4_schema({"type": "string", "pattern": pattern})


def test_an_escaped_dollar_and_the_end_lookahead_are_kept() -> None:
    for pattern in (r"^\$[0-9]+(?![\s\S])", r"^[a-z]+(?![\s\S])"):
        assert draft4_schema({"type": "string", "pattern": pattern})["pattern"] == pattern


def test_the_end_lookahead_refuses_a_trailing_newline_where_dollar_does_not() -> None:
    anchored = Draft4Validator({"type": "string", "pattern": "^[a-z]+$"})
    assert anchored.is_valid("abc\n")  # the trap: jsonschema evaluates patterns with Python's re
    assert not Draft4Validator({"type": "string", "pattern": r"^[a-z]+(?![\s\S])"}).is_valid("abc\n")


def test_request_patterns_end_without_dollar_and_integers_are_draft4_integers(schema: dict[str, Any]) -> None:
    patterns = [sub["pattern"] for sub in walk(schema) if "pattern" in sub]
    assert len(patterns) >= 7 and all(p.endswith(r"(?![\s\S])") for p in patterns)
    integers = Draft4Validator(schema["properties"]["count"])
    assert integers.is_valid(4) and not integers.is_valid(4.0) and not integers.is_valid("4")


def test_formats_outside_draft4_and_null_defaults_are_dropped() -> None:
    converted = draft4_schema(
        {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid", "default": None},
                "at": {"type": "string", "format": "date-time", "examples": ["2026-01-01T00:00:00Z"]},
            },
        }
    )
    assert converted["properties"] == {
        "id": {"type": "string"},
        "at": {"type": "string", "format": "date-time"},
    }
