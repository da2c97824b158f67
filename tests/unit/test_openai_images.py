"""The OpenAI Images mapping (``image_pipeline.core.openai_images``): the request read as ours, errors in
OpenAI's shape with the SDK's statuses, and the answer."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from image_pipeline.core.job_control import SyncAnswer
from image_pipeline.core.jobs import ApiError
from image_pipeline.core.openai_images import (
    JOB_ID_HEADER,
    MAX_B64_RESPONSE_BYTES,
    SHOULD_RETRY_HEADER,
    OpenAIError,
    bearer_key,
    check_generation,
    generations_answer,
    openai_error,
    to_image_request,
)
from image_pipeline.core.settings import Settings

SETTINGS = Settings(default_model="stable-image-core", max_images_per_request=8)


def request_of(body: dict[str, Any]) -> dict[str, Any]:
    return to_image_request(body, SETTINGS).request


def test_defaults_are_openais() -> None:
    assert request_of({"prompt": "a cat"}) == {"prompt": "a cat", "count": 1}
    assert to_image_request({"prompt": "a cat"}, SETTINGS).response_format == "url"


@pytest.mark.parametrize(
    ("model", "size", "expected"),
    [
        ("stable-image-core", "1024x1024", {"aspect_ratio": "1:1"}),
        ("stable-image-core", "1536x1024", {"aspect_ratio": "3:2"}),
        ("stable-image-core", "1024x1536", {"aspect_ratio": "2:3"}),
        ("titan-image-v2", "1024x1024", {"width": 1024, "height": 1024}),
        ("nova-canvas", "1792x1024", {"width": 1792, "height": 1024}),
        ("stable-image-core", "auto", {}),
    ],
)
def test_size_is_the_models_size_or_exact_ratio(model: str, size: str, expected: dict[str, Any]) -> None:
    request = request_of({"prompt": "x", "model": model, "size": size})
    assert {k: v for k, v in request.items() if k in {"width", "height", "aspect_ratio"}} == expected


@pytest.mark.parametrize("size", ["1792x1024", "1024x1000", "big", "1024*1024", "0x0"])
def test_a_size_no_model_ratio_fits_is_refused_never_rounded(size: str) -> None:
    with pytest.raises(OpenAIError) as raised:
        to_image_request({"prompt": "x", "size": size}, SETTINGS)
    assert (raised.value.status, raised.value.param) == (400, "size")


@pytest.mark.parametrize("model", ["stable-image-core", "titan-image-v2"])
@pytest.mark.parametrize("size", ["1024x1024\n", "1024x1024\r", "1024x1024\x00", " 1024x1024", "1024x1024 "])
def test_a_size_with_a_control_character_or_space_is_refused(model: str, size: str) -> None:
    # Strict names on every entry point (issue 13, item 9): nothing after the size, not even a final newline.
    with pytest.raises(OpenAIError) as raised:
        to_image_request({"prompt": "x", "model": model, "size": size}, SETTINGS)
    assert (raised.value.status, raised.value.param) == (400, "size")


def test_size_with_our_size_fields_is_refused() -> None:
    with pytest.raises(OpenAIError) as raised:
        to_image_request({"prompt": "x", "size": "1024x1024", "aspect_ratio": "1:1"}, SETTINGS)
    assert raised.value.param == "size"


@pytest.mark.parametrize(
    ("model", "quality", "expected"),
    [
        ("stable-image-core", "auto", None),
        ("stable-image-core", "standard", None),
        ("nova-canvas", "standard", "standard"),
        ("nova-canvas", "hd", "premium"),
        ("nova-canvas", "high", "premium"),
    ],
)
def test_quality(model: str, quality: str, expected: str | None) -> None:
    assert request_of({"prompt": "x", "model": model, "quality": quality}).get("quality") == expected


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "quality": "hd"}, "quality"),  # Stable Image Core has one quality
        ({"prompt": "x", "quality": "low"}, "quality"),
        ({"prompt": "x", "model": "dall-e-2"}, "model"),
        ({"prompt": "x", "model": "gpt-image-1"}, "model"),
        ({"prompt": "x", "response_format": "png"}, "response_format"),
        ({"prompt": "x", "user": 7}, "user"),
        ({"prompt": "x", "stream": True}, "stream"),
        ({"prompt": "x", "count": 2}, "count"),
        ({"prompt": "x", "n": 9}, "n"),  # over the deployment's maximum, named as OpenAI names it
        ({"prompt": "x", "n": True}, "n"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "colour": "red"}, "colour"),
    ],
)
def test_refusals_name_the_openai_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(OpenAIError) as raised:
        check_generation(body, SETTINGS)
    error = raised.value
    assert (error.status, error.param, error.type) == (400, param, "invalid_request_error")
    assert error.body() == {
        "error": {"message": error.message, "type": error.type, "param": param, "code": error.code}
    }


def test_openai_model_refusal_names_our_models() -> None:
    with pytest.raises(OpenAIError) as raised:
        check_generation({"prompt": "x", "model": "dall-e-3"}, SETTINGS)
    assert "stable-image-core" in raised.value.message and raised.value.code == "model_not_found"


def test_extras_pass_through_and_user_is_not_the_request() -> None:
    execution_input, generation = check_generation(
        {"prompt": "x", "seed": 42, "negative_prompt": "fog", "output_folder": "a/b", "user": "u-1"}, SETTINGS
    )
    assert execution_input == {
        "prompt": "x",
        "count": 1,
        "seed": 42,
        "negative_prompt": "fog",
        "output_folder": "a/b",
    }
    assert generation.user == "u-1"


@pytest.mark.parametrize(
    ("status", "error", "openai_status", "kind", "code"),
    [
        (400, "AllImagesFiltered", 400, "invalid_request_error", "content_policy_violation"),
        (401, "Unauthorized", 401, "invalid_request_error", "invalid_api_key"),
        (404, "JobNotFound", 404, "invalid_request_error", "JobNotFound"),
        (413, "InvalidRequest", 400, "invalid_request_error", "invalid_value"),
        (415, "InvalidRequest", 400, "invalid_request_error", "invalid_value"),
        (429, "ImagesThrottled", 429, "rate_limit_error", "rate_limit_exceeded"),
        (502, "ImagesFailed", 502, "server_error", "ImagesFailed"),
        (503, "ServiceUnavailable", 503, "server_error", "ServiceUnavailable"),
        (504, "ExecutionTimedOut", 504, "server_error", "ExecutionTimedOut"),
    ],
)
def test_errors_have_the_sdks_statuses(
    status: int, error: str, openai_status: int, kind: str, code: str
) -> None:
    mapped = openai_error(ApiError(status, error, "why"))
    assert (mapped.status, mapped.type, mapped.code) == (openai_status, kind, code)
    if status == 429:
        assert mapped.headers["Retry-After"] == "5"
    if status in {502, 504}:
        assert mapped.headers[SHOULD_RETRY_HEADER] == "false"  # a retry would start another job


def test_a_job_outlasting_the_wait_is_504_not_retried_with_its_id() -> None:
    answer = SyncAnswer(202, {"job_id": "j-1", "status": "running"}, {"Location": "/jobs/j-1"}, False)
    generation = to_image_request({"prompt": "x"}, SETTINGS)
    with pytest.raises(OpenAIError) as raised:
        generations_answer(answer, generation, job_id="j-1", waited=25, read_image=lambda _: b"")
    error = raised.value
    assert error.status == 504 and error.code == "JobStillRunning" and "j-1" in error.message
    assert error.headers == {JOB_ID_HEADER: "j-1", SHOULD_RETRY_HEADER: "false"}


MANIFEST = {
    "images": [
        {
            "index": 0,
            "status": "SUCCEEDED",
            "key": "ns/images/j/a-0-1.png",
            "url": "https://u/0",
            "size_bytes": 9,
        },
        {"index": 1, "status": "FILTERED", "key": None},
    ]
}


def test_answer_lists_the_images_made() -> None:
    answer = SyncAnswer(200, MANIFEST, {}, True)
    for response_format, expected in (
        ("url", [{"url": "https://u/0"}]),
        ("b64_json", [{"b64_json": base64.b64encode(b"png-bytes").decode()}]),
    ):
        generation = to_image_request({"prompt": "x", "response_format": response_format}, SETTINGS)
        body, headers = generations_answer(
            answer, generation, job_id="j", waited=25, read_image=lambda _: b"png-bytes"
        )
        assert body["data"] == expected and isinstance(body["created"], int)
        assert headers == {JOB_ID_HEADER: "j"}


def test_b64_json_over_the_answer_limit_is_refused_naming_the_job() -> None:
    big = {"images": [{**MANIFEST["images"][0], "size_bytes": MAX_B64_RESPONSE_BYTES}]}
    generation = to_image_request({"prompt": "x", "response_format": "b64_json"}, SETTINGS)
    with pytest.raises(OpenAIError) as raised:
        generations_answer(
            SyncAnswer(200, big, {}, True), generation, job_id="j-9", waited=1, read_image=bytes
        )
    assert raised.value.param == "response_format" and "j-9" in raised.value.message


@pytest.mark.parametrize(
    ("header", "key"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None), (None, None)],
)
def test_bearer_key(header: str | None, key: str | None) -> None:
    assert bearer_key(header) == key
