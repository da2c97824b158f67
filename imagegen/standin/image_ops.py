"""What the Bedrock stand-in does to an input image: each Stability AI Image Service and SD3.5 Large /
Stable Image Ultra image-to-image, performed deterministically on the real input pixels with Pillow.

These are not the models. They do what the documentation says each service does to the *shape* of
an image, so that tests can check a refined image against its source:

* Fast Upscale "enhances image resolution by 4 times": exactly 4x each side, a Lanczos resize;
* Conservative and Creative Upscale "upscale them to 4K resolution" (the page gives no exact size):
  the largest whole factor that keeps the longer side at most 4096, a Lanczos resize;
* Remove Background: an RGBA image of the input's size whose alpha is 0 where a pixel is close to
  the colour most common on the input's border (the "background"), 255 elsewhere;
* Search and Replace, Inpaint: pixels change only inside the mask region (Inpaint: the ``mask``
  image, resized to the input's size as the page says, or the input's transparent pixels; Search and
  Replace: an ellipse the stand-in "finds" from ``search_prompt``, grown by ``grow_mask``), where the
  offline render of ``prompt`` replaces them;
* Outpaint: a canvas larger by ``left``/``right``/``up``/``down`` pixels with the original pixels
  unchanged inside it, the new border filled with the offline render;
* Style Transfer: the ``init_image``'s size, blended with ``style_image`` by ``style_strength``;
* image-to-image (variation): the input's size, blended with the offline render by ``strength``
  (0 keeps the input, 1 is the render).

Every result depends only on the body (and the seed), so the same call gives the same image.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections import Counter
from typing import Any

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from imagegen.standin.renderer import render_image

#: Which operation a model id performs (None: text to image).
OPERATIONS = {
    "stability.stable-fast-upscale-v1:0": "fast-upscale",
    "stability.stable-conservative-upscale-v1:0": "upscale-4k",
    "stability.stable-creative-upscale-v1:0": "upscale-4k",
    "stability.stable-image-remove-background-v1:0": "remove-background",
    "stability.stable-image-search-replace-v1:0": "search-and-replace",
    "stability.stable-image-inpaint-v1:0": "inpaint",
    "stability.stable-outpaint-v1:0": "outpaint",
    "stability.stable-style-transfer-v1:0": "style-transfer",
}
#: "4K": the longer side of a Conservative or Creative upscale is at most this.
UPSCALE_4K_SIDE = 4096
#: How close (sum of channel differences) a pixel must be to the border colour to be background.
_BACKGROUND_DISTANCE = 48


def decode(encoded: str) -> Image.Image:
    """A base64 image of a body (checked against its schema before)."""
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    image.load()
    return image


def operation_of(model_id: str, body: dict[str, Any]) -> str | None:
    """The operation a call asks for: an image service's, ``image-to-image`` when a text-to-image model
    gets an ``image`` (SD3.5 ``mode: image-to-image``, Ultra's optional ``image``), else None."""
    if model_id in OPERATIONS:
        return OPERATIONS[model_id]
    if isinstance(body.get("image"), str):
        return "image-to-image"
    return None


def _render(prompt: str, seed: int, size: tuple[int, int]) -> Image.Image:
    return render_image(prompt or "offline edit", seed, size[0], size[1]).convert("RGB")


def _number(body: dict[str, Any], name: str, default: float) -> float:
    value = body.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def apply(operation: str, body: dict[str, Any], prompt: str, seed: int) -> Image.Image:
    """The image a call answers with (``prompt`` without fault directives)."""
    if operation == "style-transfer":
        source = decode(body["init_image"]).convert("RGB")
        style = decode(body["style_image"]).convert("RGB").resize(source.size, Image.Resampling.BILINEAR)
        # style_strength 0 would be the input itself; keep it visibly changed at the low end too.
        return Image.blend(source, style, 0.2 + 0.6 * _number(body, "style_strength", 1.0))
    source = decode(body["image"])
    if operation == "fast-upscale":
        return source.resize((source.width * 4, source.height * 4), Image.Resampling.LANCZOS)
    if operation == "upscale-4k":
        factor = max(1, UPSCALE_4K_SIDE // max(source.size))
        return source.resize((source.width * factor, source.height * factor), Image.Resampling.LANCZOS)
    if operation == "remove-background":
        return _remove_background(source.convert("RGB"))
    if operation == "image-to-image":
        rgb = source.convert("RGB")
        return Image.blend(rgb, _render(prompt, seed, rgb.size), _number(body, "strength", 0.35))
    if operation == "inpaint":
        rgb = source.convert("RGB")
        if isinstance(body.get("mask"), str):
            mask = decode(body["mask"]).convert("L").resize(rgb.size, Image.Resampling.NEAREST)
        else:  # "the alpha channel of the image": transparent pixels are inpainted
            mask = ImageChops.invert(source.convert("RGBA").getchannel("A"))
        mask = _grown(mask.point(lambda v: 255 if v >= 128 else 0), body)
        return Image.composite(_render(prompt, seed, rgb.size), rgb, mask)
    if operation == "search-and-replace":
        rgb = source.convert("RGB")
        mask = _grown(_found(str(body.get("search_prompt", "")), rgb.size), body)
        return Image.composite(_render(prompt, seed, rgb.size), rgb, mask)
    if operation == "outpaint":
        return _outpaint(source.convert("RGB"), body, prompt, seed)
    raise ValueError(f"no such operation: {operation}")


def _grown(mask: Image.Image, body: dict[str, Any]) -> Image.Image:
    """``grow_mask`` (default 5) pixels added around the mask's edges."""
    grow = int(_number(body, "grow_mask", 5))
    return mask.filter(ImageFilter.MaxFilter(2 * grow + 1)) if grow else mask


def _found(search: str, size: tuple[int, int]) -> Image.Image:
    """Where the stand-in "finds" ``search``: an ellipse of half the image's size, placed by its words."""
    digest = hashlib.sha256(search.encode()).digest()
    width, height = size
    box_w, box_h = max(1, width // 2), max(1, height // 2)
    left = digest[0] * (width - box_w) // 255
    top = digest[1] * (height - box_h) // 255
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse((left, top, left + box_w - 1, top + box_h - 1), fill=255)
    return mask


def _remove_background(rgb: Image.Image) -> Image.Image:
    width, height = rgb.size
    border = [rgb.getpixel((x, 0)) for x in range(width)] + [
        rgb.getpixel((x, height - 1)) for x in range(width)
    ]
    border += [rgb.getpixel((0, y)) for y in range(height)] + [
        rgb.getpixel((width - 1, y)) for y in range(height)
    ]
    key = Counter(border).most_common(1)[0][0]
    plain = Image.new("RGB", rgb.size, key)  # type: ignore[arg-type]
    distance = ImageChops.difference(rgb, plain).convert("L")  # luminance of the per-channel differences
    alpha = distance.point(lambda v: 0 if v * 3 < _BACKGROUND_DISTANCE else 255)
    result = rgb.convert("RGBA")
    result.putalpha(alpha)
    return result


def _outpaint(rgb: Image.Image, body: dict[str, Any], prompt: str, seed: int) -> Image.Image:
    left, right, up, down = (int(_number(body, side, 0)) for side in ("left", "right", "up", "down"))
    size = (rgb.width + left + right, rgb.height + up + down)
    canvas = _render(prompt, seed, size)
    canvas.paste(rgb, (left, up))
    return canvas
