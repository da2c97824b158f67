"""Strict numbers and names on every entry point, with one message.

What API Gateway's schema refuses (numbers as text, booleans or fractions for numbers, control characters
in names, at their very end too), each entry point refuses with the same ``InvalidRequest`` field
message: a JSON body (the API function and the local server: ``parse_body`` then
``validate_submission``), a query string (``GET /images``: ``query_request``, which reads number fields
as JSON numbers), and the console or an event (the workflow's first step, ValidateRequest).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from image_pipeline.contract.errors import InvalidRequest
from image_pipeline.contract.request import (
    ACCEPTS,
    NUMBER_FIELDS,
    ImageRequest,
    describe_value,
    parse_request,
    request_from_query,
)
from image_pipeline.core.jobs import ApiError, parse_body, query_request, validate_submission
from image_pipeline.core.planning import check_request
from image_pipeline.core.settings import Settings, get_settings

from imagegen.runtime.lambda_router import LambdaRouter
from imagegen.testing.bad_inputs import STRICT_BAD_REQUESTS

_IDS = [f"{i:02d}-{field}" for i, (_, field) in enumerate(STRICT_BAD_REQUESTS)]


def refusal(raw: Any, settings: Settings) -> InvalidRequest:
    """What check_request (every entry point's check) says about ``raw``."""
    with pytest.raises(InvalidRequest) as caught:
        check_request(raw, settings)
    return caught.value


def is_json(raw: Any) -> bool:
    try:
        json.dumps(raw, allow_nan=False)
    except ValueError:
        return False
    return True


# -- the request model --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"prompt": "ok", "count": "4"}, 'count: must be an integer from 1 to 40, not "4"'),
        ({"prompt": "ok", "count": 4.0}, "count: must be an integer from 1 to 40, not 4.0"),
        ({"prompt": "ok", "count": True}, "count: must be an integer from 1 to 40, not true"),
        ({"prompt": "ok", "count": 41}, "count: must be an integer from 1 to 40, not 41"),
        ({"prompt": "ok", "seed": "42"}, 'seed: must be an integer from 0 to 4294967295, not "42"'),
        ({"prompt": "ok", "cfg_scale": "7"}, 'cfg_scale: must be a number from 1.0 to 10.0, not "7"'),
        ({"prompt": "ok", "cfg_scale": float("nan")}, "cfg_scale: must be a number from 1.0 to 10.0, not NaN"),
        ({"prompt": "ok", "width": None, "height": [1]}, "height: must be an integer from 64 to 4096, not a list"),
        ({"prompt": "ok", "idempotency_key": "k\n"}, "idempotency_key: must be 1 to 64 letters, digits, '_' or '-', not \"k\\n\""),
        ({"prompt": "ok", "quality": "best"}, 'quality: must be standard or premium, not "best"'),
    ],
)  # fmt: skip
def test_a_refusal_says_what_the_field_takes_and_what_it_was_given(raw: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(raw)
    assert [str(e) for e in caught.value.errors] == [message]


def test_every_field_says_what_it_takes() -> None:
    assert set(ACCEPTS) == set(ImageRequest.model_fields)
    assert {
        "count", "width", "height", "seed", "cfg_scale",
        # operations on a stored image (issue 16)
        "strength", "left", "right", "up", "down", "creativity", "grow_mask", "style_strength",
        "composition_fidelity", "change_strength",
    } == NUMBER_FIELDS  # fmt: skip


def test_an_integer_is_a_number_for_cfg_scale() -> None:
    assert parse_request({"prompt": "ok", "cfg_scale": 7}).cfg_scale == 7.0


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("a\u200bb", '"a\\u200bb"'),
        ("tab\there", '"tab\\there"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("x" * 41, "text of 41 characters"),
        ("x" * 50 + "\x07", "text of 51 characters, with U+0007 at character 51"),
        ("lone \ud800", "text with a lone surrogate (U+D800 at character 6)"),
        (float("inf"), "Infinity"),
        (2**200, "an integer of more than 38 digits"),
        ({"a": 1}, "an object"),
    ],
)
def test_given_values_are_shown_so_that_what_does_not_print_shows(value: Any, shown: str) -> None:
    assert describe_value(value) == shown


def test_trailing_newlines_are_refused_in_every_name() -> None:
    """Python's ``$`` matches before a final newline; the patterns end with "nothing follows"."""
    for field in ("output_folder", "file_name_prefix", "idempotency_key", "style", "model", "aspect_ratio"):
        good = {"output_folder": "a/b", "file_name_prefix": "img", "idempotency_key": "k-1", "style": "ANIME",
                "model": "stable-image-core", "aspect_ratio": "16:9"}[field]  # fmt: skip
        parse_request({"prompt": "ok", field: good})
        for end in ("\n", "\r\n", "\t", "\x00", "\u2028"):
            with pytest.raises(InvalidRequest, match=f"^Invalid request: {field}: must be "):
                parse_request({"prompt": "ok", field: good + end})


# -- a JSON body: the API function and the local server ---------------------------------------------------


@pytest.mark.parametrize(("raw", "field"), STRICT_BAD_REQUESTS, ids=_IDS)
def test_a_json_body_is_refused_with_the_one_message(raw: Any, field: str, settings: Settings) -> None:
    body = json.dumps(raw).encode()
    with pytest.raises(ApiError) as caught:
        validate_submission(parse_body(body, "application/json"), settings=settings)
    expected = refusal(raw, settings)
    assert caught.value.status == 400 and caught.value.error == "InvalidRequest"
    assert caught.value.message == str(expected) and caught.value.details == expected.errors
    assert field in [d.field for d in caught.value.details]


def test_a_checked_body_is_typed_for_the_workflow_which_checks_it_again(settings: Settings) -> None:
    body = b'{"prompt": "ok", "model": "sd3-5-large", "aspect_ratio": "16:9", "seed": 5, "count": 2}'
    execution_input, _ = validate_submission(parse_body(body, "application/json"), settings=settings)
    assert execution_input == {
        "prompt": "ok",
        "model": "sd3-5-large",
        "aspect_ratio": "16:9",
        "seed": 5,
        "count": 2,
    }
    assert parse_request(json.loads(json.dumps(execution_input))).seed == 5
    # A number field given as an integer stays valid through the round trip as a float.
    request = parse_request({"prompt": "ok", "cfg_scale": 7})
    assert parse_request(json.loads(json.dumps(request.model_dump(mode="json")))).cfg_scale == 7.0


# -- a query string: GET /images ------------------------------------------------------------------------


def test_query_numbers_are_read_as_json_numbers() -> None:
    pairs = [("prompt", "12"), ("count", "2"), ("seed", "7"), ("cfg_scale", "7.5"), ("width", "1e3")]
    assert query_request(pairs) == {"prompt": "12", "count": 2, "seed": 7, "cfg_scale": 7.5, "width": 1000.0}
    assert request_from_query({"model": "123", "style": "1"}) == {"model": "123", "style": "1"}


def test_a_valid_query_gives_the_same_execution_input_as_its_json_body(settings: Settings) -> None:
    pairs = [
        ("prompt", "a cat"),
        ("count", "2"),
        ("seed", "7"),
        ("model", "sd3-5-large"),
        ("aspect_ratio", "3:2"),
    ]
    from_query, _ = validate_submission(query_request(pairs), settings=settings)
    body = b'{"prompt": "a cat", "count": 2, "seed": 7, "model": "sd3-5-large", "aspect_ratio": "3:2"}'
    assert from_query == validate_submission(parse_body(body, "application/json"), settings=settings)[0]


@pytest.mark.parametrize(
    ("name", "text", "as_json"),
    [
        ("count", "four", "four"),  # not a number: text, refused as text in a JSON body is
        ("count", "4.0", 4.0),  # a number, not an integer
        ("count", "1e1", 10.0),
        ("count", "04", "04"),  # not a JSON number
        ("count", " 4", " 4"),
        ("count", "", ""),
        ("count", "0", 0),
        ("seed", "-1", -1),
        ("seed", "true", "true"),  # a query string has no booleans
        ("seed", "42.5", 42.5),
        ("seed", "9" * 5000, "9" * 5000),  # more digits than Python reads as an integer: text
        ("cfg_scale", "seven", "seven"),
        ("cfg_scale", "1e400", float("inf")),
        ("cfg_scale", "NaN", "NaN"),
        ("width", "0x400", "0x400"),
        ("output_folder", "images\n", "images\n"),
        ("file_name_prefix", "img\t", "img\t"),
    ],
)
def test_a_query_is_refused_with_the_message_of_its_json_body(
    name: str, text: str, as_json: Any, settings: Settings
) -> None:
    with pytest.raises(ApiError) as from_query:
        validate_submission(query_request([("prompt", "ok"), (name, text)]), settings=settings)
    expected = refusal({"prompt": "ok", name: as_json}, settings)
    assert from_query.value.status == 400 and from_query.value.message == str(expected)
    assert [d.field for d in from_query.value.details] == [name]


# -- the console and events: the workflow's first step ----------------------------------------------


@pytest.fixture
def first_step(monkeypatch: pytest.MonkeyPatch, fresh_clients: None) -> Iterator[LambdaRouter]:
    """ValidateRequest as the state machine invokes it (no AWS call happens before it refuses)."""
    monkeypatch.setenv("IMAGES_BUCKET", "strict-bucket")
    monkeypatch.setenv("DEFAULT_MODEL", "stable-image-core")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    importlib.import_module("image_pipeline.handlers.validate_request")
    yield LambdaRouter({"validate": "image_pipeline.handlers.validate_request.handler"})


def _first_step_error(router: LambdaRouter, execution_input: Any) -> dict[str, Any]:
    # Step Functions hands the function the execution input as JSON.
    event = json.loads(json.dumps({"input": execution_input, "execution_name": "strict-1"}))
    status, function_error, payload = router.invoke("validate", event)
    assert (status, function_error) == (200, "Unhandled")
    return dict(json.loads(payload))


@pytest.mark.parametrize(("raw", "field"), STRICT_BAD_REQUESTS, ids=_IDS)
def test_console_and_event_input_is_refused_with_the_one_message(
    first_step: LambdaRouter, raw: Any, field: str
) -> None:
    if not is_json(raw):
        pytest.skip("not JSON: Step Functions takes no such execution input")
    expected = str(refusal(raw, get_settings()))
    event = {"detail-type": "ImageGenerationRequested", "source": "shop", "account": "1", "detail": raw}
    for execution_input in (raw, event):  # a console run; an event rule without an input path
        error = _first_step_error(first_step, execution_input)
        assert error["errorType"] == "InvalidRequest" and error["errorMessage"] == expected
        assert f"{field}: must be " in expected
