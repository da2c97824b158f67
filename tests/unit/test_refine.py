"""Operations on a stored image (issue 16): the fields that go together, the model that does each, the
checks of the stored images against S3 (moto), and each service's body against the schema transcribed
from the Bedrock documentation (the stand-in's check, not ours)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from image_pipeline.contract.errors import InvalidRequest, StorageError
from image_pipeline.core.generation import generate_image
from image_pipeline.core.manifest import build_manifest
from image_pipeline.core.planning import check_request, plan
from image_pipeline.core.png_pixels import NotAPng, is_black_and_white, png_dimensions
from image_pipeline.core.refine import NOT_FOUND, check_stored_images, read_stored_images
from image_pipeline.core.settings import Settings
from image_pipeline.core.tenancy import Caller
from image_pipeline.models.registry import get_adapter, list_adapters
from moto import mock_aws
from PIL import Image

from imagegen.standin.body_schemas import BodySchemas

BUCKET = "test-bucket"
ME = Caller("apiKey", "me-1")
OTHER = Caller("apiKey", "other-2")
SETTINGS = Settings(images_bucket=BUCKET, allowed_models=(), max_images_per_request=40, region="us-west-2")


def png(width: int = 96, height: int = 64, mode: str = "RGB", color: Any = (40, 90, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def key_of(caller: Caller, name: str = "image-00-7.png") -> str:
    return f"{caller.namespace}/images/job-1/{name}"


def refused(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidRequest) as caught:
        check_request(raw, SETTINGS)
    return [str(e) for e in caught.value.errors]


SOURCE = key_of(ME)


# -- fields and models ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "model", "count"),
    [
        ({"operation": "upscale"}, "stable-fast-upscale", 1),
        ({"operation": "upscale", "upscale_mode": "conservative"}, "stable-conservative-upscale", 1),
        ({"operation": "upscale", "upscale_mode": "creative", "count": 2}, "stable-creative-upscale", 2),
        ({"operation": "variation"}, "sd3-5-large", 4),
        ({"operation": "variation", "model": "stable-image-ultra", "strength": 0.8}, "stable-image-ultra", 4),
        ({"operation": "remove-background"}, "stable-remove-background", 1),
        (
            {"operation": "search-and-replace", "prompt": "a dog", "search_prompt": "cat"},
            "stable-search-replace",
            4,
        ),
        ({"operation": "inpaint", "prompt": "a dog", "mask_prompt": "the cat"}, "stable-search-replace", 4),
        ({"operation": "inpaint", "prompt": "a dog", "mask_image": key_of(ME, "m.png")}, "stable-inpaint", 4),
        ({"operation": "outpaint", "left": 100, "count": 1}, "stable-outpaint", 1),
        ({"operation": "style-transfer", "style_image": key_of(ME, "s.png")}, "stable-style-transfer", 4),
    ],
)
def test_each_operation_has_its_model_and_count(raw: dict[str, Any], model: str, count: int) -> None:
    checked = check_request({"source_image": SOURCE, **raw}, SETTINGS)
    assert (checked.adapter.registry_id, checked.request.count) == (model, count)
    planned = plan(checked, "job-2", caller=ME)
    assert planned["request"]["source_image"] == SOURCE  # the key passes between states, never bytes
    assert len({image["seed"] for image in planned["images"]}) == count  # a seed per branch
    assert planned["cache"] is False


@pytest.mark.parametrize(
    ("raw", "errors"),
    [
        (
            {"operation": "upscale"},
            ["source_image: required by operation upscale: the key of a stored image"],
        ),
        ({"source_image": SOURCE}, ["operation: required with source_image: what to do with the image"]),
        ({"source_image": "https://example.com/a.png", "operation": "upscale"}, None),
        ({"source_image": "other-bucket/a.png", "operation": "upscale"}, None),
        (
            {"source_image": SOURCE, "operation": "upscale", "strength": 0.5},
            ["strength: goes with operation variation; leave it out"],
        ),
        (
            {"source_image": SOURCE, "operation": "search-and-replace", "prompt": "a dog"},
            ["search_prompt: required by search-and-replace: what to replace"],
        ),
        (
            {"source_image": SOURCE, "operation": "inpaint", "prompt": "a dog"},
            ["mask_image: inpaint takes a mask_image or a mask_prompt: send one of them"],
        ),
        (
            {"source_image": SOURCE, "operation": "outpaint", "left": 0},
            ["left: outpaint needs at least one of left, right, up, down above 0 (pixels to add)"],
        ),
        ({"source_image": SOURCE, "operation": "outpaint", "up": 2001}, None),
        (
            {
                "source_image": SOURCE,
                "operation": "upscale",
                "upscale_mode": "conservative",
                "creativity": 0.7,
            },
            ["creativity: stable-conservative-upscale takes creativity from 0.1 to 0.5, not 0.7"],
        ),
        (
            {"source_image": SOURCE, "operation": "upscale", "seed": 5},
            ["seed: stable-fast-upscale takes no seed; leave it out"],
        ),
        (
            {"source_image": SOURCE, "operation": "remove-background", "count": 3},
            [
                "count: stable-remove-background takes count 1 (it has no seed: every image would be the same), not 3"
            ],
        ),
        (
            {"source_image": SOURCE, "operation": "remove-background", "prompt": "x"},
            ["prompt: stable-remove-background takes no prompt; leave it out"],
        ),
        (
            {"source_image": SOURCE, "operation": "variation", "model": "stable-image-core"},
            [
                "model: stable-image-core does not do variation; models that do: sd3-5-large, stable-image-ultra"
            ],
        ),
        (
            {
                "source_image": SOURCE,
                "operation": "upscale",
                "upscale_mode": "fast",
                "model": "stable-creative-upscale",
            },
            [
                "model: stable-creative-upscale does not do upscale (fast); models that do: stable-fast-upscale"
            ],
        ),
        (
            {"prompt": "a cat", "model": "stable-outpaint"},
            [
                "model: stable-outpaint works on a stored image: send source_image and operation (outpaint), "
                "or name a text-to-image model"
            ],
        ),
        (
            {"source_image": SOURCE, "operation": "variation", "aspect_ratio": "16:9"},
            ["aspect_ratio: sd3-5-large takes the size of source_image in a variation, not a aspect_ratio"],
        ),
        (
            {"source_image": SOURCE, "operation": "outpaint", "left": 10, "negative_prompt": "x"},
            ["negative_prompt: stable-outpaint takes no negative_prompt; leave it out"],
        ),
        (
            {"source_image": SOURCE, "operation": "inpaint", "mask_prompt": "cat"},
            ["prompt: required by inpaint: what to draw"],
        ),
    ],
)
def test_bad_refine_fields_are_refused_naming_the_field(
    raw: dict[str, Any], errors: list[str] | None
) -> None:
    found = refused(raw)
    if errors is None:  # the request model's own pattern or range
        assert len(found) == 1 and found[0].split(":")[0] in {"source_image", "up"}, found
    else:
        assert found == errors


def test_a_deployment_without_the_operations_model_says_so() -> None:
    settings = Settings(images_bucket=BUCKET, allowed_models=("stable-image-core",), region="us-west-2")
    with pytest.raises(InvalidRequest) as caught:
        check_request({"source_image": SOURCE, "operation": "upscale"}, settings)
    assert [str(e) for e in caught.value.errors] == [
        "operation: no model enabled in this deployment does upscale"
    ]


def test_a_text_request_still_needs_a_prompt() -> None:
    assert refused({"count": 2})[0].startswith("prompt: required: text of 1 to 10000 characters")


# -- the service bodies, checked against the transcribed Bedrock schemas --------------------------

_RAW = {
    "stable-fast-upscale": {"operation": "upscale"},
    "stable-conservative-upscale": {
        "operation": "upscale",
        "upscale_mode": "conservative",
        "creativity": 0.2,
    },
    "stable-creative-upscale": {"operation": "upscale", "upscale_mode": "creative", "style": "anime"},
    "stable-remove-background": {"operation": "remove-background"},
    "stable-search-replace": {"operation": "search-and-replace", "prompt": "a dog", "search_prompt": "cat"},
    "stable-inpaint": {
        "operation": "inpaint",
        "prompt": "a dog",
        "mask_image": key_of(ME, "m.png"),
        "grow_mask": 3,
    },
    "stable-outpaint": {"operation": "outpaint", "left": 64, "down": 32, "creativity": 0.9},
    "stable-style-transfer": {
        "operation": "style-transfer",
        "style_image": key_of(ME, "s.png"),
        "style_strength": 0.4,
    },
    "sd3-5-large": {"operation": "variation", "prompt": "a cat", "strength": 0.6},
    "stable-image-ultra": {"operation": "variation", "model": "stable-image-ultra"},
}


@pytest.mark.parametrize("registry_id", list(_RAW))
def test_each_operations_body_is_one_bedrock_documents(registry_id: str) -> None:
    checked = check_request({"source_image": SOURCE, "model": registry_id, **_RAW[registry_id]}, SETTINGS)
    adapter = checked.adapter
    params = adapter.normalize(checked.request)
    inputs = {field: png(96, 64) for field in adapter.input_keys(params)}
    body = adapter.build_body(params, 77, inputs)
    assert BodySchemas().check(adapter.model_id, body) == []
    image_field = "init_image" if registry_id == "stable-style-transfer" else "image"
    assert base64.b64decode(body[image_field]) == inputs["source_image"]
    lineage = adapter.lineage(params)
    assert lineage is not None and lineage["source_image"] == SOURCE
    assert lineage["source_manifest"] == f"{ME.namespace}/images/job-1/manifest.json"


def test_every_image_service_is_covered_and_cites_its_page() -> None:
    services = [a.registry_id for a in list_adapters() if not a.text_to_image]
    assert set(services) <= set(_RAW) and len(services) == 8
    for registry_id in services:
        assert (
            get_adapter(registry_id)
            .input_limits["source_image"]
            .source.startswith("https://docs.aws.amazon.com/")
        )


# -- the stored images --------------------------------------------------------------------------


@pytest.fixture
def s3(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _put(s3: Any, key: str, data: bytes) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body=data, ContentType="image/png")
    return key


def _check(s3: Any, raw: dict[str, Any], caller: Caller = ME) -> list[str]:
    checked = check_request(raw, SETTINGS)
    try:
        check_stored_images(checked.request, checked.adapter, caller=caller, s3=s3, bucket=BUCKET)
    except InvalidRequest as exc:
        return [str(e) for e in exc.errors]
    return []


def test_another_callers_key_is_not_found_like_a_missing_one(s3: Any) -> None:
    theirs = _put(s3, key_of(OTHER), png())
    assert _check(s3, {"source_image": theirs, "operation": "upscale"}) == [f"source_image: {NOT_FOUND}"]
    assert _check(s3, {"source_image": key_of(ME, "gone.png"), "operation": "upscale"}) == [
        f"source_image: {NOT_FOUND}"
    ]
    assert _check(s3, {"source_image": theirs, "operation": "upscale"}, caller=OTHER) == []


def test_a_source_outside_the_models_limits_is_refused_with_the_limit(s3: Any) -> None:
    wide = _put(s3, key_of(ME, "wide.png"), png(1600, 600))
    (error,) = _check(s3, {"source_image": wide, "operation": "upscale"})
    assert error.startswith(
        "source_image: stable-fast-upscale takes images of 32 to 1536 pixels wide and 32 to 1536 high, "
        "1,024 to 1,048,576 pixels in all, not 1600x600 (a width of 1600 pixels"
    )
    tiny = _put(s3, key_of(ME, "tiny.png"), png(40, 40))
    (error,) = _check(s3, {"source_image": tiny, "operation": "remove-background"})
    assert "not 40x40 (a side of 40 pixels" in error and "stable-image-services.html" in error
    tall = _put(s3, key_of(ME, "tall.png"), png(64, 200))
    (error,) = _check(s3, {"source_image": tall, "operation": "outpaint", "left": 5})
    assert "an aspect ratio from 1:2.5 to 2.5:1, not 64x200" in error
    big = _put(s3, key_of(ME, "big.png"), png(1100, 1000))
    (error,) = _check(s3, {"source_image": big, "operation": "upscale", "upscale_mode": "creative"})
    assert "4,096 to 1,048,576 pixels in all, not 1100x1000 (1,100,000 pixels" in error


def test_a_mask_must_be_black_and_white_and_the_sources_size(s3: Any) -> None:
    source = _put(s3, key_of(ME), png(96, 64))
    raw = {"source_image": source, "operation": "inpaint", "prompt": "a dog"}
    small = _put(s3, key_of(ME, "small.png"), png(48, 32, "L", 255))
    assert _check(s3, {**raw, "mask_image": small}) == [
        "mask_image: must be the size of source_image (96x64), not 48x32"
    ]
    grey = _put(s3, key_of(ME, "grey.png"), png(96, 64, "L", 128))
    assert _check(s3, {**raw, "mask_image": grey}) == [
        "mask_image: must be black and white (white: repaint, black: keep), not grey or colour"
    ]
    mask = Image.new("L", (96, 64), 0)
    mask.paste(255, (10, 10, 50, 40))
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    good = _put(s3, key_of(ME, "mask.png"), buffer.getvalue())
    assert _check(s3, {**raw, "mask_image": good}) == []


def test_a_masks_pixels_are_read_only_when_nothing_else_is_wrong(s3: Any) -> None:
    """The mask's pixels are decoded (CPU, core/time_budget.mask_check_seconds) only once it is the size
    of a source that passed its limits: a grey mask beside a source that is too small, or missing, is
    refused for that alone, and a mask without a source is refused."""
    grey = _put(s3, key_of(ME, "grey.png"), png(40, 40, "L", 128))
    tiny = _put(s3, key_of(ME, "tiny.png"), png(40, 40))
    raw = {"operation": "inpaint", "prompt": "a dog", "mask_image": grey}
    (error,) = _check(s3, {**raw, "source_image": tiny})
    assert error.startswith("source_image: ") and "not 40x40" in error
    assert _check(s3, {**raw, "source_image": key_of(ME, "gone.png")}) == [f"source_image: {NOT_FOUND}"]
    big_grey = _put(s3, key_of(ME, "big-grey.png"), png(96, 64, "L", 128))
    source = _put(s3, key_of(ME), png(96, 64))
    assert _check(s3, {**raw, "mask_image": big_grey, "source_image": source}) == [
        "mask_image: must be black and white (white: repaint, black: keep), not grey or colour"
    ]


def test_a_branch_reads_each_stored_image_once(s3: Any) -> None:
    source = _put(s3, key_of(ME), png(96, 64))
    assert read_stored_images(s3, BUCKET, {"source_image": source}) == {"source_image": png(96, 64)}
    with pytest.raises(StorageError):
        read_stored_images(s3, BUCKET, {"source_image": key_of(ME, "deleted.png")})


class _Bedrock:
    """Answers one image service call with a PNG of the given size, recording the body."""

    def __init__(self, width: int, height: int) -> None:
        self.size, self.bodies = (width, height), []  # type: ignore[var-annotated]

    def invoke_model(self, **kwargs: Any) -> dict[str, Any]:
        self.bodies.append(json.loads(kwargs["body"]))
        image = base64.b64encode(png(*self.size)).decode()
        answer = {"seeds": [self.bodies[-1].get("seed", 0)], "finish_reasons": [None], "images": [image]}
        return {"body": io.BytesIO(json.dumps(answer).encode())}


def test_the_branch_and_the_manifest_record_lineage_and_cost(s3: Any) -> None:
    source = _put(s3, key_of(ME), png(96, 64))
    checked = check_request(
        {"source_image": source, "operation": "upscale", "file_name_prefix": "up"}, SETTINGS
    )
    planned = plan(checked, "job-3", caller=ME)
    bedrock = _Bedrock(384, 256)
    item = {**{k: planned[k] for k in ("request_id", "model", "request", "caller_namespace")}}
    result = generate_image({**item, "image": planned["images"][0]}, bedrock=bedrock, s3=s3, bucket=BUCKET)
    assert base64.b64decode(bedrock.bodies[0]["image"]) == png(96, 64)
    assert set(bedrock.bodies[0]) == {"image", "output_format"}
    assert result["lineage"]["operation"] == "upscale" and (result["width"], result["height"]) == (384, 256)
    manifest = build_manifest({**planned, "results": [result]}, s3=s3, bucket=BUCKET, expires_in=60)
    (image,) = manifest["images"]
    assert image["lineage"] == {
        "operation": "upscale",
        "source_image": source,
        "source_manifest": f"{ME.namespace}/images/job-1/manifest.json",
        "style_image": None,
        "mask_image": None,
        "parameters": {},
    }
    assert image["cost_usd"] == 0.03 and manifest["cost"]["model_price"]["status"] == "verify"
    assert manifest["prompt"] is None and manifest["model"]["id"] == "stable-fast-upscale"


# -- reading PNGs without Pillow (the Lambda asset has none) --------------------------------------


@pytest.mark.parametrize("mode", ["1", "L", "LA", "RGB", "RGBA", "P"])
def test_black_and_white_is_read_from_every_common_png_kind(mode: str) -> None:
    picture = Image.new("RGB", (37, 23), (0, 0, 0))
    picture.paste((255, 255, 255), (5, 3, 30, 20))
    for optimize in (False, True):  # Pillow's filters: none, and adaptive per row
        buffer = io.BytesIO()
        picture.convert(mode).save(buffer, "PNG", optimize=optimize)
        assert png_dimensions(buffer.getvalue()) == (37, 23)
        assert is_black_and_white(buffer.getvalue()), (mode, optimize)
    picture.putpixel((20, 10), (128, 128, 128))
    buffer = io.BytesIO()
    picture.convert(mode if mode != "1" else "L").save(buffer, "PNG", optimize=True)
    assert not is_black_and_white(buffer.getvalue())


def test_a_photo_like_mask_is_not_black_and_white_and_junk_is_not_a_png() -> None:
    noisy = Image.effect_noise((64, 64), 40).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, "PNG")
    assert not is_black_and_white(buffer.getvalue())
    with pytest.raises(NotAPng):
        is_black_and_white(b"GIF89a" + bytes(40))


def test_get_models_says_what_each_model_does() -> None:
    from image_pipeline.core.jobs import model_catalog

    described = {m["id"]: m for m in model_catalog(SETTINGS)["models"]}
    assert described["stable-image-core"]["text_to_image"] is True
    assert described["stable-image-core"]["operations"] == []
    assert described["sd3-5-large"]["operations"] == ["variation"]
    upscale = described["stable-fast-upscale"]
    assert (upscale["text_to_image"], upscale["operations"], upscale["upscale_mode"]) == (
        False,
        ["upscale"],
        "fast",
    )
    assert upscale["invoke_id"] == "us.stability.stable-fast-upscale-v1:0"  # a cross-Region profile
    assert upscale["input_limits"]["source_image"].startswith("images of 32 to 1536 pixels wide")


@pytest.mark.parametrize("field", ["source_image", "operation", "mask_image", "style_image"])
def test_openai_generations_refuse_the_refine_fields(field: str) -> None:
    """images.generate draws from a prompt: a refine field is a 400 naming it (never a 500 for lack of
    a caller to check the image as)."""
    from image_pipeline.core.openai_images import OpenAIError, check_generation

    with pytest.raises(OpenAIError) as caught:
        check_generation({"prompt": "a cat", field: SOURCE if field != "operation" else "upscale"}, SETTINGS)
    assert (caught.value.status, caught.value.param, caught.value.code) == (400, field, "unknown_parameter")
    assert "POST /images with source_image and operation" in caught.value.message
