"""A deterministic placeholder image renderer for offline runs. It is not an image model.

``render_png`` turns a prompt and a seed into an abstract composition (a gradient and a few shapes
whose colours and layout come from a SHA-256 hash of the inputs) and prints on it, plainly,
``OFFLINE RENDER — not a model``, the prompt and the seed. Nothing about the picture depicts the
prompt; it exists so that the pipeline can be run, tested and benchmarked without Amazon Bedrock.

Properties the offline stack relies on:

* the same arguments give byte-identical PNG files (with the same Pillow version);
* a different seed, prompt, negative prompt or style gives a visibly different picture;
* the output is a real RGB PNG of exactly ``width`` x ``height`` pixels;
* it is fast: the composition is drawn at a reduced size, upscaled with nearest-neighbour
  resampling, the text is drawn at full size, and the PNG is saved with a low compression level.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import random
import unicodedata

from PIL import Image, ImageDraw, ImageFont, ImageOps

__all__ = ["BANNER", "MAX_SIDE", "render_image", "render_png"]

BANNER = "OFFLINE RENDER — not a model"
"""The words printed on every image."""

MAX_SIDE = 8192
"""Largest width or height accepted (the real models stop at 4096)."""

_WORK_SIDE = 192  # longest side of the reduced canvas the composition is drawn on
_PNG_COMPRESS_LEVEL = 1
_MIN_CAPTION_SIDE = 48  # smaller images are too small for legible text and carry none

# Characters Pillow's built-in font (Aileron) has glyphs for, besides printable ASCII.
_EXTRA_GLYPHS = frozenset(
    "\u00a9\u00ab\u00b0\u00b1\u00b4\u00b7\u00bb\u2018\u2019\u201c\u201d\u2026\u2039\u203a\u2044\u2122"
)
# Dashes and hyphens (U+2010..U+2015, U+2212) and whitespace the font cannot draw.
_REPLACEMENTS = {chr(c): "-" for c in (*range(0x2010, 0x2016), 0x2212)} | {"\t": " ", "\n": " ", "\r": " "}


def render_png(
    prompt: str,
    seed: int,
    width: int,
    height: int,
    *,
    negative_prompt: str | None = None,
    style: str | None = None,
) -> bytes:
    """Render the placeholder image for ``prompt`` and ``seed`` and return it as PNG bytes.

    Deterministic: equal arguments give equal bytes. Raises ValueError for a width or height
    outside 1..MAX_SIDE.
    """
    image = render_image(prompt, seed, width, height, negative_prompt=negative_prompt, style=style)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def render_image(
    prompt: str,
    seed: int,
    width: int,
    height: int,
    *,
    negative_prompt: str | None = None,
    style: str | None = None,
) -> Image.Image:
    """The placeholder picture of ``render_png`` as an RGB Pillow image (to save in other formats)."""
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
            raise ValueError(f"{name} must be an integer from 1 to {MAX_SIDE}, got {value!r}")
    digest = hashlib.sha256(
        json.dumps([prompt, int(seed), negative_prompt, style], ensure_ascii=True).encode()
    ).digest()
    rng = random.Random(digest)

    scale = max(1, math.ceil(max(width, height) / _WORK_SIDE))
    small = _composition(rng, max(1, math.ceil(width / scale)), max(1, math.ceil(height / scale)))
    image = small.resize((width, height), Image.Resampling.NEAREST) if scale > 1 else small
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.NEAREST)
    if width >= _MIN_CAPTION_SIDE and height >= _MIN_CAPTION_SIDE:
        _caption(image, prompt, int(seed), style)
    return image


def _colour(rng: random.Random, *, light: bool | None = None) -> tuple[int, int, int]:
    hue = rng.random()
    sat = 0.45 + 0.5 * rng.random()
    if light is None:
        val = 0.35 + 0.6 * rng.random()
    else:
        val = 0.8 + 0.2 * rng.random() if light else 0.15 + 0.3 * rng.random()
    # HSV -> RGB without colorsys rounding surprises: all integer output.
    i = int(hue * 6) % 6
    f = hue * 6 - int(hue * 6)
    p, q, t = val * (1 - sat), val * (1 - f * sat), val * (1 - (1 - f) * sat)
    r, g, b = ((val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q))[i]
    return round(r * 255), round(g * 255), round(b * 255)


def _composition(rng: random.Random, w: int, h: int) -> Image.Image:
    """Gradient background and translucent shapes on a small canvas, all chosen by ``rng``."""
    gradient = Image.linear_gradient("L") if rng.random() < 0.6 else Image.radial_gradient("L")
    gradient = gradient.transpose(
        rng.choice((Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270))
    )
    gradient = gradient.resize((w, h), Image.Resampling.BILINEAR)
    background = ImageOps.colorize(
        gradient, black=_colour(rng, light=False), white=_colour(rng, light=True), mid=_colour(rng)
    )

    overlay = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    side = max(w, h)
    for _ in range(rng.randint(6, 12)):
        fill = (*_colour(rng), rng.randint(90, 220))
        cx, cy = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
        radius = rng.uniform(0.06, 0.35) * side
        kind = rng.randrange(4)
        box = (cx - radius, cy - radius * rng.uniform(0.4, 1.0), cx + radius, cy + radius)
        if kind == 0:
            draw.ellipse(box, fill=fill)
        elif kind == 1:
            draw.rectangle(box, fill=fill)
        elif kind == 2:
            points = [
                (cx + radius * math.cos(a), cy + radius * math.sin(a))
                for a in sorted(rng.uniform(0, 2 * math.pi) for _ in range(rng.randint(3, 6)))
            ]
            draw.polygon(points, fill=fill)
        else:
            x2, y2 = rng.uniform(0, w), rng.uniform(0, h)
            draw.line((cx, cy, x2, y2), fill=fill, width=max(1, round(radius / 6)))
    return Image.alpha_composite(background.convert("RGBA"), overlay).convert("RGB")


@functools.lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=4096)
def _char_width(size: int, ch: str) -> float:
    return _font(size).getlength(ch)


def _length(text: str, size: int) -> float:
    """Width of ``text`` in the built-in font at ``size``: a sum of cached glyph advances (no kerning,
    which the built-in font's basic layout does not apply to ASCII anyway, to within a pixel or so)."""
    return sum(_char_width(size, ch) for ch in text)


def _printable(text: str) -> str:
    """``text`` reduced to characters the built-in font can draw (others become '?')."""
    out = []
    for ch in unicodedata.normalize("NFKD", text):
        ch = _REPLACEMENTS.get(ch, ch)
        if unicodedata.combining(ch):
            continue
        out.append(ch if " " <= ch <= "~" or ch in _EXTRA_GLYPHS else "?")
    return " ".join("".join(out).split())


def _fit(text: str, size: int, width: float) -> int:
    """The largest n >= 1 such that ``text[:n]`` fits in ``width`` pixels (1 if nothing fits)."""
    low, high = 1, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if _length(text[:mid], size) <= width:
            low = mid
        else:
            high = mid - 1
    return low


def _wrap(text: str, size: int, width: float, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels and at most ``max_lines`` lines, long words cut, '…' if cut."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if _length(candidate, size) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        while len(word) > 1 and _length(word, size) > width and len(lines) <= max_lines:
            cut = _fit(word, size, width)
            lines.append(word[:cut])
            word = word[cut:]
        current = word
        if len(lines) > max_lines:
            break
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        lines = lines[:max_lines]
        lines[-1] = last[: _fit(last + "…", size, width) - 1].rstrip() + "…"
    return lines


def _caption(image: Image.Image, prompt: str, seed: int, style: str | None) -> None:
    """Print the banner at the top and the prompt and seed at the bottom, on dark panels."""
    width, height = image.size
    # About 1/26 of the short side, but small enough for the banner (~15 em wide) to fit.
    size = max(6, min(min(width, height) // 26, width // 16))
    small = max(6, round(size * 0.8))
    font, font_small = _font(size), _font(small)
    margin = max(2, size // 2)
    draw = ImageDraw.Draw(image)
    ink = (255, 214, 0)

    # Banner. The built-in font has no em dash, so the dash is drawn as a line.
    head, tail = (part.strip() for part in BANNER.split("\u2014"))
    gap, dash = _length(" ", size), _length("M", size)
    banner_width = _length(head, size) + _length(tail, size) + 2 * gap + dash
    box_h = size + margin
    draw.rectangle((0, 0, min(width, banner_width + 2 * margin), box_h), fill=(16, 16, 16))
    x, y = margin, margin // 2
    draw.text((x, y), head, font=font, fill=ink)
    x += int(_length(head, size) + gap)
    mid_y = y + size * 0.6
    draw.line((x, mid_y, x + dash, mid_y), fill=ink, width=max(1, size // 12))
    draw.text((x + dash + gap, y), tail, font=font, fill=ink)

    # Prompt and seed.
    text_width = max(1, width - 2 * margin)
    max_lines = max(1, min(4, (height // 3) // (small + 2)))
    lines = _wrap(_printable(prompt) or "(empty prompt)", small, text_width, max_lines)
    lines.append(f"seed {seed}" + (f" · style {_printable(style)}" if style else "") + f" · {width}x{height}")
    line_h = small + max(2, small // 4)
    top = min(height - 1, max(box_h + 1, height - margin - line_h * len(lines)))
    draw.rectangle((0, top - margin // 2, width, height), fill=(16, 16, 16))
    for i, line in enumerate(lines):
        colour = (200, 200, 200) if i == len(lines) - 1 else (245, 245, 245)
        draw.text((margin, top + i * line_h), line, font=font_small, fill=colour)
