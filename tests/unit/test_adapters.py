"""Model adapters: InvokeModel bodies, response parsing, content-filter outcomes, error classes."""

from __future__ import annotations

import base64
import io

import pytest
from image_pipeline.contract.errors import (
    ModelAccessDenied,
    ModelRejected,
    ModelResponseInvalid,
    ModelThrottled,
    ModelTimeout,
    ModelUnavailable,
)
from image_pipeline.contract.request import parse_request
from image_pipeline.models.base import Outcome, decode_image, error_for_client_error, png_size
from image_pipeline.models.ids import BEDROCK_MODEL_IDS
from image_pipeline.models.registry import get_adapter, list_adapters, resolve_model
from PIL import Image


def png(width: int = 8, height: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


B64 = base64.b64encode(png()).decode()


def test_registry_has_the_six_models_with_unique_ids() -> None:
    ids = [a.registry_id for a in list_adapters()]
    assert ids == [
        "titan-image-v1",
        "titan-image-v2",
        "nova-canvas",
        "sd3-5-large",
        "stable-image-core",
        "stable-image-ultra",
    ]
    assert len({a.model_id for a in list_adapters()}) == 6


def test_retiring_models_are_marked() -> None:
    assert get_adapter("titan-image-v2").lifecycle == "legacy"
    assert get_adapter("titan-image-v2").end_of_life == "2026-06-30"
    assert get_adapter("nova-canvas").lifecycle == "legacy"
    assert get_adapter("stable-image-core").lifecycle == "active"
    described = get_adapter("nova-canvas").describe()
    assert described["model_id"] == "amazon.nova-canvas-v1:0" and described["max_seed"] == 858_993_459


def test_resolve_unknown_model_lists_the_available_ones() -> None:
    error = resolve_model("nope", allowed=("stable-image-core", "sd3-5-large"))
    assert not isinstance(error, type(get_adapter("sd3-5-large")))
    assert "sd3-5-large" in str(error) and "stable-image-core" in str(error) and "nova" not in str(error)


@pytest.mark.parametrize("registry_id", ["titan-image-v1", "titan-image-v2", "nova-canvas"])
def test_amazon_body(registry_id: str) -> None:
    adapter = get_adapter(registry_id)
    request = parse_request(
        {"prompt": "a cat", "negative_prompt": "dogs", "width": 768, "height": 768, "quality": "premium"}
    )
    assert adapter.validate(request) == []
    body = adapter.build_body(adapter.normalize(request), seed=7)
    assert body == {
        "taskType": "TEXT_IMAGE",
        "textToImageParams": {"text": "a cat", "negativeText": "dogs"},
        "imageGenerationConfig": {
            "numberOfImages": 1,
            "quality": "premium",
            "cfgScale": adapter.normalize(request)["cfg_scale"],
            "seed": 7,
            "width": 768,
            "height": 768,
        },
    }


def test_nova_style_and_default_cfg() -> None:
    adapter = get_adapter("nova-canvas")
    params = adapter.normalize(parse_request({"prompt": "a cat", "style": "PHOTOREALISM"}))
    body = adapter.build_body(params, seed=1)
    assert body["textToImageParams"]["style"] == "PHOTOREALISM"
    assert body["imageGenerationConfig"]["cfgScale"] == 6.5
    assert "negativeText" not in body["textToImageParams"]


@pytest.mark.parametrize(
    ("registry_id", "extra"),
    [("sd3-5-large", {"mode": "text-to-image"}), ("stable-image-core", {}), ("stable-image-ultra", {})],
)
def test_stability_body(registry_id: str, extra: dict) -> None:
    adapter = get_adapter(registry_id)
    request = parse_request({"prompt": "a cat", "negative_prompt": "dogs", "aspect_ratio": "16:9"})
    assert adapter.validate(request) == []
    body = adapter.build_body(adapter.normalize(request), seed=3)
    assert body == {
        "prompt": "a cat",
        "negative_prompt": "dogs",
        "aspect_ratio": "16:9",
        "seed": 3,
        "output_format": "png",
        **extra,
    }


def test_amazon_image_response() -> None:
    outcome = get_adapter("titan-image-v2").parse_response({"images": [B64], "error": None}, seed=5)
    assert outcome.image == png() and outcome.seed == 5 and outcome.reason_code is None


@pytest.mark.parametrize(
    "error",
    [
        "All of the generated images have been blocked by our content filters.",
        "Some of the generated images have been blocked by our content filters.",
    ],
)
def test_amazon_output_blocked_is_a_filter_outcome(error: str) -> None:
    outcome = get_adapter("nova-canvas").parse_response({"images": [], "error": error}, seed=5)
    assert (
        outcome.image is None
        and outcome.reason_code == "CONTENT_FILTERED_OUTPUT"
        and outcome.message == error
    )


def test_amazon_no_image_without_filter_is_invalid() -> None:
    with pytest.raises(ModelResponseInvalid):
        get_adapter("nova-canvas").parse_response({"images": [], "error": "something else"}, seed=1)


def test_stability_returns_the_seed_it_used() -> None:
    payload = {"seeds": [123], "finish_reasons": [None], "images": [B64]}
    outcome = get_adapter("stable-image-core").parse_response(payload, seed=5)
    assert outcome.seed == 123 and outcome.image == png()


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("Filter reason: prompt", "CONTENT_FILTERED_INPUT"),
        ("Filter reason: input image", "CONTENT_FILTERED_INPUT"),
        ("Filter reason: output image", "CONTENT_FILTERED_OUTPUT"),
    ],
)
def test_stability_finish_reasons(reason: str, code: str) -> None:
    outcome = get_adapter("sd3-5-large").parse_response(
        {"seeds": [1], "finish_reasons": [reason], "images": []}, seed=1
    )
    assert outcome == Outcome(seed=1, reason_code=code, message=reason)


def test_stability_inference_error_is_transient() -> None:
    with pytest.raises(ModelUnavailable):
        get_adapter("sd3-5-large").parse_response(
            {"seeds": [1], "finish_reasons": ["Inference error"], "images": []}, seed=1
        )


@pytest.mark.parametrize("bad", [None, "", "not base64!!", base64.b64encode(b"GIF89a not a png").decode()])
def test_bad_images_are_rejected(bad: object) -> None:
    with pytest.raises(ModelResponseInvalid):
        decode_image(bad)


def test_png_size() -> None:
    assert png_size(png(31, 17)) == (31, 17)


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        ("ThrottlingException", "Too many requests", ModelThrottled),
        ("ServiceQuotaExceededException", "quota", ModelThrottled),
        ("ModelTimeoutException", "timed out", ModelTimeout),
        ("ServiceUnavailableException", "busy", ModelUnavailable),
        ("InternalServerException", "oops", ModelUnavailable),
        ("ModelNotReadyException", "warming", ModelUnavailable),
        ("ModelErrorException", "fail", ModelUnavailable),
        ("AccessDeniedException", "no access", ModelAccessDenied),
        ("ResourceNotFoundException", "no model", ModelAccessDenied),
        ("ValidationException", "width must be ...", ModelRejected),
    ],
)
def test_client_errors_are_classified(code: str, message: str, expected: type) -> None:
    assert isinstance(error_for_client_error(code, message), expected)


def test_blocked_prompt_is_a_filter_outcome_not_an_error() -> None:
    message = "This request has been blocked by our content filters. Please adjust your text prompt to submit a new request."
    outcome = error_for_client_error("ValidationException", message)
    assert outcome == Outcome(reason_code="CONTENT_FILTERED_INPUT", message=message)


def test_stability_models_list_their_aspect_ratios() -> None:
    assert "16:9" in get_adapter("sd3-5-large").describe()["aspect_ratios"]
    assert "aspect_ratios" not in get_adapter("nova-canvas").describe()


def test_the_registry_has_one_adapter_per_model_id_in_order() -> None:
    assert [(a.registry_id, a.model_id) for a in list_adapters()] == list(BEDROCK_MODEL_IDS.items())
