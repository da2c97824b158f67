"""The API's request model is generated from ``ImageRequest`` and says what pydantic says, in draft 4."""

from __future__ import annotations

import copy
import json
from typing import Any, Literal

import aws_cdk as cdk
import pytest
from aws_cdk import aws_apigateway as apigw
from aws_cdk.assertions import Template
from image_pipeline.contract.request import ImageRequest
from jsonschema import Draft4Validator
from pydantic import BaseModel, Field, ValidationError

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
    assert schema["required"] == ["prompt"]
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
        if info.is_required() or info.default is not None:
            continue
        payload = {"prompt": "a red porsche", field: None}
        assert pydantic_accepts(payload), field
        assert validator.is_valid(payload), field


VALID = [
    load_event("request_minimal"),
    load_event("request_full"),
    load_event("eventbridge_request")["detail"],
    {"prompt": "x", "count": 40, "aspect_ratio": "16:9", "quality": "standard", "cfg_scale": 1},
    {"prompt": "x", "seed": 0, "idempotency_key": "A_b-9", "file_name_prefix": "a.b_c-d"},
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
    {"prompt": "x", "seed": 4_294_967_295},
    {"prompt": "x", "idempotency_key": "has space"},
    {"prompt": "x", "idempotency_key": "k" * 65},
    {"prompt": "x", "file_name_prefix": "-dash-first"},
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
    for payload in ({"prompt": "   "}, {"prompt": "x", "output_folder": "../up"}):
        assert validator.is_valid(payload)
        assert not pydantic_accepts(payload)


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
