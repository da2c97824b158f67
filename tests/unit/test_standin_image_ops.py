"""The stand-in performs each image service (and image-to-image) on the real input pixels, so a test
can check a refined image against its source (issue 16, item 5); bodies Bedrock refuses are refused
with its ValidationException, from the schemas transcribed from the documentation."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from PIL import Image, ImageChops, ImageDraw, ImageStat

from imagegen.standin.bedrock_server import LocalBedrockServer


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with LocalBedrockServer(check_availability=False) as server:
        yield boto3.client(
            "bedrock-runtime",
            endpoint_url=server.endpoint_url,
            region_name="us-west-2",
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
        )


def picture(width: int = 160, height: int = 96) -> Image.Image:
    """A subject (a red disc) on a plain grey background, with a gradient stripe: not uniform."""
    image = Image.new("RGB", (width, height), (200, 200, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 3, height // 4, 2 * width // 3, 3 * height // 4), fill=(220, 30, 30))
    for x in range(width):
        draw.point((x, height - 2), fill=(x % 256, 0, 255 - x % 256))
    return image


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def answer(client: Any, model_id: str, body: dict[str, Any]) -> Image.Image:
    response = client.invoke_model(modelId=model_id, body=json.dumps(body), contentType="application/json")
    payload = json.loads(response["body"].read())
    assert payload["finish_reasons"] == [None] and len(payload["seeds"]) == 1
    image = Image.open(io.BytesIO(base64.b64decode(payload["images"][0])))
    image.load()
    return image


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


SOURCE = picture()


def test_fast_upscale_is_four_times_each_side_and_a_resize_of_its_input(client: Any) -> None:
    out = answer(client, "us.stability.stable-fast-upscale-v1:0", {"image": b64(SOURCE)})
    assert out.size == (640, 384)
    assert mean_difference(out.resize(SOURCE.size, Image.Resampling.LANCZOS), SOURCE) < 3


@pytest.mark.parametrize("service", ["conservative", "creative"])
def test_the_4k_upscales_reach_4096_on_the_longer_side_by_a_whole_factor(client: Any, service: str) -> None:
    small = SOURCE.resize((128, 80))
    out = answer(client, f"us.stability.stable-{service}-upscale-v1:0", {"prompt": "", "image": b64(small)})
    assert out.size == (128 * 32, 80 * 32) and max(out.size) <= 4096
    assert mean_difference(out.resize(small.size, Image.Resampling.LANCZOS), small) < 3


def test_remove_background_has_an_alpha_channel_clear_on_the_background(client: Any) -> None:
    out = answer(client, "us.stability.stable-image-remove-background-v1:0", {"image": b64(SOURCE)})
    assert out.mode == "RGBA" and out.size == SOURCE.size
    assert out.getpixel((2, 2))[3] == 0  # grey background
    assert out.getpixel((80, 48))[3] == 255  # the red subject
    assert out.convert("RGB").getpixel((80, 48)) == SOURCE.getpixel((80, 48))


def test_outpaint_is_larger_on_the_named_sides_with_the_original_inside(client: Any) -> None:
    body = {"image": b64(SOURCE), "left": 30, "down": 12, "prompt": "more sky"}
    out = answer(client, "us.stability.stable-outpaint-v1:0", body).convert("RGB")
    assert out.size == (160 + 30, 96 + 12)
    inside = out.crop((30, 0, 30 + 160, 96))
    assert ImageChops.difference(inside, SOURCE).getbbox() is None  # exactly the original pixels


@pytest.mark.parametrize(
    ("model_id", "extra"),
    [
        ("stability.sd3-5-large-v1:0", {"mode": "image-to-image", "strength": 0.35}),
        ("stability.stable-image-ultra-v1:1", {}),
    ],
)
def test_a_variation_differs_from_its_source_but_keeps_its_size(
    client: Any, model_id: str, extra: dict[str, Any]
) -> None:
    body = {"prompt": "a cat", "image": b64(SOURCE), "seed": 5, **extra}
    out = answer(client, model_id, body)
    assert out.size == SOURCE.size and mean_difference(out, SOURCE) > 5
    again = answer(client, model_id, {**body, "seed": 6})
    assert mean_difference(out, again) > 1  # each seed its own variation
    assert ImageChops.difference(out, answer(client, model_id, body)).getbbox() is None  # deterministic


def test_inpaint_changes_only_the_white_of_the_mask(client: Any) -> None:
    mask = Image.new("L", SOURCE.size, 0)
    ImageDraw.Draw(mask).rectangle((10, 10, 49, 39), fill=255)
    body = {"prompt": "a dog", "image": b64(SOURCE), "mask": b64(mask), "grow_mask": 0, "seed": 3}
    out = answer(client, "us.stability.stable-image-inpaint-v1:0", body).convert("RGB")
    changed = ImageChops.difference(out, SOURCE).convert("L").point(lambda v: 255 if v else 0)
    box = changed.getbbox()
    assert box is not None and box[0] >= 10 and box[1] >= 10 and box[2] <= 50 and box[3] <= 40


def test_search_and_replace_changes_pixels_inside_what_it_found_only(client: Any) -> None:
    body = {"prompt": "a dog", "search_prompt": "the disc", "image": b64(SOURCE), "seed": 3}
    out = answer(client, "us.stability.stable-image-search-replace-v1:0", body).convert("RGB")
    changed = ImageChops.difference(out, SOURCE).convert("L").point(lambda v: 255 if v else 0)
    box = changed.getbbox()
    assert box is not None
    area = (box[2] - box[0]) * (box[3] - box[1])
    assert 0 < area < 160 * 96 * 0.6  # a region, not the whole image
    for corner in ((0, 0), (159, 0), (0, 95), (159, 95)):
        assert out.getpixel(corner) == SOURCE.getpixel(corner)


def test_style_transfer_keeps_the_size_and_changes_the_image(client: Any) -> None:
    style = Image.new("RGB", (100, 100), (20, 160, 40))
    body = {"init_image": b64(SOURCE), "style_image": b64(style), "style_strength": 0.5}
    out = answer(client, "us.stability.stable-style-transfer-v1:0", body)
    assert out.size == SOURCE.size and mean_difference(out, SOURCE) > 10


@pytest.mark.parametrize(
    ("model_id", "body", "expected"),
    [
        (
            "us.stability.stable-style-transfer-v1:0",
            {"init_image": b64(SOURCE), "style_image": b64(Image.new("RGB", (40, 40)))},
            "#/style_image: 40x40: each side must be at least 64 pixels",
        ),
        (
            "us.stability.stable-creative-upscale-v1:0",
            {"prompt": "", "image": b64(Image.new("RGB", (1100, 1000)))},
            "#/image: 1100x1000: the image must have at most 1048576 pixels",
        ),
        (
            "us.stability.stable-outpaint-v1:0",
            {"image": b64(SOURCE), "left": 2001},
            "#/left: 2001 is not less or equal to 2000",
        ),
        (
            "us.stability.stable-fast-upscale-v1:0",
            {"image": b64(SOURCE), "seed": 3},
            "#: extraneous key [seed] is not permitted",
        ),
    ],
)
def test_what_bedrock_refuses_is_a_validation_exception(
    client: Any, model_id: str, body: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ClientError) as caught:
        client.invoke_model(modelId=model_id, body=json.dumps(body), contentType="application/json")
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert error["Message"].startswith("Malformed input request: ") and expected in error["Message"]
