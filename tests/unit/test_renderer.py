"""The offline placeholder renderer: deterministic, exact size, visibly seed-dependent, labelled."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageStat

from imagegen.standin.renderer import BANNER, render_image, render_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _mean_difference(a: bytes, b: bytes) -> float:
    """Mean absolute difference per channel (0..255) between two same-size images."""
    diff = ImageChops.difference(_decode(a).convert("RGB"), _decode(b).convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / 3


def test_same_arguments_give_identical_bytes() -> None:
    first = render_png("a lighthouse at dawn", 42, 512, 512, negative_prompt="fog", style="PHOTOREALISM")
    second = render_png("a lighthouse at dawn", 42, 512, 512, negative_prompt="fog", style="PHOTOREALISM")
    assert first == second
    assert first.startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("a lighthouse", 1, {}), ("a lighthouse", 2, {})),
        (("a lighthouse", 1, {}), ("a lightship", 1, {})),
        (("a lighthouse", 1, {}), ("a lighthouse", 1, {"negative_prompt": "fog"})),
        (("a lighthouse", 1, {}), ("a lighthouse", 1, {"style": "MAXIMALISM"})),
    ],
    ids=["seed", "prompt", "negative-prompt", "style"],
)
def test_different_inputs_give_visibly_different_images(a: tuple, b: tuple) -> None:
    first = render_png(a[0], a[1], 384, 384, **a[2])
    second = render_png(b[0], b[1], 384, 384, **b[2])
    assert first != second
    # Not just different caption pixels: the composition itself changes.
    assert _mean_difference(first, second) > 8


def test_many_seeds_give_distinct_images() -> None:
    images = {render_png("same prompt", seed, 128, 128) for seed in range(12)}
    assert len(images) == 12


@pytest.mark.parametrize(
    ("width", "height"),
    [(1024, 1024), (1344, 768), (768, 1344), (1173, 640), (320, 4096), (333, 97), (48, 48), (17, 5), (1, 1)],
)
def test_output_is_rgb_png_of_exact_size(width: int, height: int) -> None:
    data = render_png("size check", 7, width, height)
    assert data.startswith(PNG_SIGNATURE)
    image = _decode(data)
    assert image.format == "PNG"
    assert image.size == (width, height)
    assert image.mode == "RGB"


def test_render_image_matches_png_pixels() -> None:
    image = render_image("pixels", 3, 200, 120)
    assert image.size == (200, 120) and image.mode == "RGB"
    assert ImageChops.difference(image, _decode(render_png("pixels", 3, 200, 120))).getbbox() is None


def test_image_carries_the_offline_label_panels() -> None:
    """The banner and caption are drawn on near-black panels at the top-left and bottom."""
    image = _decode(render_png("labelled", 5, 1024, 1024))
    assert image.getpixel((2, 2)) == (16, 16, 16)
    assert image.getpixel((1020, 1020)) == (16, 16, 16)
    # The banner's yellow ink is present in the top strip.
    red, green, blue = image.crop((0, 0, 700, 50)).split()
    yellow = ImageChops.multiply(
        ImageChops.multiply(
            red.point(lambda v: 255 if v > 200 else 0), green.point(lambda v: 255 if v > 180 else 0)
        ),
        blue.point(lambda v: 255 if v < 60 else 0),
    )
    assert yellow.getbbox() is not None
    assert "not a model" in BANNER


@pytest.mark.parametrize(
    "prompt",
    ["", "x" * 5000, "naïve café — “quoted” 日本語 emoji 🎨\ttab\nnewline", " ".join(["word"] * 2000)],
    ids=["empty", "one-long-word", "unicode", "many-words"],
)
def test_awkward_prompts_render(prompt: str) -> None:
    data = render_png(prompt, 0, 512, 512)
    assert _decode(data).size == (512, 512)
    assert data == render_png(prompt, 0, 512, 512)


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (-1, 5), (9000, 10), (10.0, 10), (True, 10)])
def test_invalid_sizes_are_rejected(width: object, height: object) -> None:
    with pytest.raises(ValueError, match=r"width|height"):
        render_png("bad", 1, width, height)  # type: ignore[arg-type]


def test_large_seed_values_are_accepted() -> None:
    assert _decode(render_png("big seed", 4_294_967_294, 64, 64)).size == (64, 64)
