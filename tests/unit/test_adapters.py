"""Model adapters: InvokeModel bodies, response parsing, content-filter outcomes, error classes."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError
from image_pipeline.contract.errors import (
    ModelAccessDenied,
    ModelRejected,
    ModelResponseInvalid,
    ModelThrottled,
    ModelTimeout,
    ModelUnavailable,
)
from image_pipeline.contract.request import parse_request
from image_pipeline.models.amazon import NOVA_STYLES, TITAN_SIZES
from image_pipeline.models.base import (
    ImageModelAdapter,
    Outcome,
    decode_image,
    error_for_client_error,
    png_size,
)
from image_pipeline.models.ids import BEDROCK_MODEL_IDS
from image_pipeline.models.registry import get_adapter, list_adapters, resolve_model
from PIL import Image

from imagegen.standin.bedrock_server import LocalBedrockServer


def png(width: int = 8, height: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


B64 = base64.b64encode(png()).decode()


def test_registry_has_the_fourteen_models_with_unique_ids() -> None:
    ids = [a.registry_id for a in list_adapters()]
    assert ids == [
        "titan-image-v1",
        "titan-image-v2",
        "nova-canvas",
        "sd3-5-large",
        "stable-image-core",
        "stable-image-ultra",
        # the Stability AI Image Services: operations on a stored image (issue 16)
        "stable-conservative-upscale",
        "stable-creative-upscale",
        "stable-fast-upscale",
        "stable-remove-background",
        "stable-search-replace",
        "stable-inpaint",
        "stable-outpaint",
        "stable-style-transfer",
    ]
    assert len({a.model_id for a in list_adapters()}) == 14


def test_an_adapter_describes_its_lifecycle_and_regions_from_the_facts_file() -> None:
    assert get_adapter("titan-image-v2").facts.lifecycle.eol_date.isoformat() == "2026-06-30"
    described = get_adapter("nova-canvas").describe()
    assert described["model_id"] == "amazon.nova-canvas-v1:0" and described["max_seed"] == 2_147_483_646
    assert (described["legacy_date"], described["end_of_life"]) == ("2026-03-30", "2026-09-30")
    assert described["regions"] == ["ap-northeast-1", "eu-west-1", "us-east-1"]
    core = get_adapter("stable-image-core").describe()
    assert core["end_of_life"] is None and core["regions"] == ["us-west-2"] and core["marketplace"]


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


# -- the adapters' bodies against the Bedrock stand-in, as strict as Bedrock's documentation ----------
# Every body an adapter builds for a request it accepts goes through boto3 to the stand-in, which checks
# it against the JSON Schema transcribed from the Bedrock documentation (tests/schemas/bedrock), not
# against our own validation. Lifecycle and Region are not the adapters' concern here (Titan and Nova
# are past end of life), so the stand-in serves every model; bodies are what is checked.

_SIZES = sorted(
    set(TITAN_SIZES)
    | {
        (320, 320), (336, 336), (512, 512), (1024, 1024), (1280, 720), (1920, 1080), (1344, 768),
        (832, 1248), (1216, 832), (2048, 2032), (4080, 1024), (1024, 4080), (320, 1280), (1280, 320),
        (4096, 1024), (2048, 2048), (330, 330), (64, 64), (4096, 4096),
    }
)  # fmt: skip
_ASPECTS = ["1:1", "16:9", "9:16", "21:9", "9:21", "2:3", "3:2", "4:5", "5:4", "4:1", "1:4", "7:3", "5:1"]


def _requests(adapter: ImageModelAdapter) -> list[dict[str, Any]]:
    """A grid of requests around a plain one, one field varied at a time."""
    base = {"prompt": "a lighthouse at dusk", "count": 1}
    variants: list[dict[str, Any]] = [{}]
    variants += [{"width": w, "height": h} for w, h in _SIZES]
    variants += [{"aspect_ratio": aspect} for aspect in _ASPECTS]
    variants += [{"quality": q} for q in ("standard", "premium")]
    variants += [{"cfg_scale": cfg} for cfg in (1.0, 1.1, 6.5, 8.0, 10.0)]
    variants += [{"style": style} for style in NOVA_STYLES]
    variants += [{"seed": 0}, {"seed": adapter.max_seed}]
    variants += [
        {"prompt": "p" * adapter.prompt_max_chars},
        {"negative_prompt": "n" * adapter.negative_max_chars},
        {"negative_prompt": "blurry", "quality": "premium", "cfg_scale": 7.5, "aspect_ratio": "3:2"},
        {"prompt": "a fox [[fault:latency=0]]"},
    ]
    return [{**base, **variant} for variant in variants]


def _valid_bodies(adapter: ImageModelAdapter) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    bodies = []
    for raw in _requests(adapter):
        request = parse_request(raw)
        if adapter.validate(request) == []:
            bodies.append((raw, adapter.build_body(adapter.normalize(request), seed=request.seed or 1)))
    return bodies


@pytest.fixture(scope="module")
def bedrock() -> Iterator[Any]:
    with LocalBedrockServer(check_availability=False) as server:
        assert server.schemas.enabled and all(server.schemas.has_schema(a.model_id) for a in list_adapters())
        yield server.client(region_name="us-west-2")


def _invoke(client: Any, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.invoke_model(modelId=model_id, body=json.dumps(body), contentType="application/json")
    return json.loads(response["body"].read())


@pytest.mark.parametrize(
    "adapter", [a for a in list_adapters() if a.text_to_image], ids=lambda a: a.registry_id
)
def test_every_body_built_for_a_valid_request_is_accepted(bedrock: Any, adapter: ImageModelAdapter) -> None:
    bodies = _valid_bodies(adapter)
    assert len(bodies) >= 12  # the grid is not vacuous for any model (Stability refuses every size)

    def answer(body: dict[str, Any]) -> dict[str, Any] | str:
        try:
            return _invoke(bedrock, adapter.model_id, body)
        except ClientError as exc:
            return str(exc.response["Error"]["Message"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(answer, [body for _, body in bodies]))
    refused = [(raw, got) for (raw, _), got in zip(bodies, answers, strict=True) if isinstance(got, str)]
    assert refused == []
    for (_, body), payload in zip(bodies, answers, strict=True):
        assert isinstance(payload, dict)
        outcome = adapter.parse_response(payload, seed=body.get("seed", 1))
        assert outcome.image is not None and outcome.reason_code is None


def _amazon_mutations() -> list[tuple[str, Any]]:
    return [
        ("extraneous key [negative_prompt]", lambda b: b["textToImageParams"].update(negative_prompt="x")),
        ("required key [text] not found", lambda b: b["textToImageParams"].pop("text")),
        ("#/taskType: IMAGE is not a valid enum value", lambda b: b.update(taskType="IMAGE")),
        ("#/imageGenerationConfig/quality: best is not a valid enum value",
         lambda b: b["imageGenerationConfig"].update(quality="best")),
        ("#/imageGenerationConfig/seed: expected type: Integer, found: String",
         lambda b: b["imageGenerationConfig"].update(seed="7")),
    ]  # fmt: skip


def _stability_mutations() -> list[tuple[str, Any]]:
    return [
        ("#: extraneous key [cfg_scale] is not permitted", lambda b: b.update(cfg_scale=7)),
        ("#: required key [prompt] not found", lambda b: b.pop("prompt")),
        ("#/aspect_ratio: 7:3 is not a valid enum value", lambda b: b.update(aspect_ratio="7:3")),
        ("#/seed: -1 is not greater or equal to 0", lambda b: b.update(seed=-1)),
        ("#/output_format: gif is not a valid enum value", lambda b: b.update(output_format="gif")),
    ]


_BAD_BODIES = [
    *[("titan-image-v2", *m) for m in _amazon_mutations()],
    *[("nova-canvas", *m) for m in _amazon_mutations()],
    ("nova-canvas", "each side must be evenly divisible by 16", lambda b: b["imageGenerationConfig"].update(width=1000)),
    ("nova-canvas", "#/imageGenerationConfig/numberOfImages: 6 is not less or equal to 5",
     lambda b: b["imageGenerationConfig"].update(numberOfImages=6)),
    ("titan-image-v1", "1000x1000 is not one of the permissible sizes",
     lambda b: b["imageGenerationConfig"].update(width=1000, height=1000)),
    ("titan-image-v1", "extraneous key [style]", lambda b: b["textToImageParams"].update(style="PHOTOREALISM")),
    *[(registry_id, *m) for registry_id in ("sd3-5-large", "stable-image-core", "stable-image-ultra")
      for m in _stability_mutations()],
    ("stable-image-core", "#/mode: image-to-image is not a valid enum value", lambda b: b.update(mode="image-to-image")),
    ("sd3-5-large", "#: required key [image] not found", lambda b: b.update(mode="image-to-image")),
]  # fmt: skip


@pytest.mark.parametrize(("registry_id", "expected", "mutate"), _BAD_BODIES)
def test_hand_made_bad_bodies_are_refused_as_bedrock_refuses_them(
    bedrock: Any, registry_id: str, expected: str, mutate: Any
) -> None:
    adapter = get_adapter(registry_id)
    body = adapter.build_body(adapter.normalize(parse_request({"prompt": "a cat", "count": 1})), seed=7)
    _invoke(bedrock, adapter.model_id, body)  # the adapter's own body is fine
    mutate(body)
    with pytest.raises(bedrock.exceptions.ValidationException) as exc_info:
        _invoke(bedrock, adapter.model_id, body)
    error = exc_info.value.response["Error"]
    assert exc_info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Message"].startswith("Malformed input request: ") and expected in error["Message"]
    assert isinstance(error_for_client_error(error["Code"], error["Message"]), ModelRejected)  # never retried
