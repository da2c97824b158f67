"""The catalogue of bad inputs, shared by the test suites and ``tools/reliability_run.py``.

``BAD_REQUESTS`` is the request-level list the unit suite checks one by one against the request model
(``tests/unit/test_request.py``). ``SCHEMA_BAD_REQUESTS`` is that list plus the cases it lacks:
unicode edge cases, more path traversal and odd characters in ``output_folder`` and
``file_name_prefix``, wrong types, sizes and models a deployment refuses, strict numbers and names
(``STRICT_BAD_REQUESTS``), parameters a model cannot honour exactly (``UNHONOURED_REQUESTS``) and
operations on a stored image wrong in their fields (``REFINE_BAD_REQUESTS``). Each is a
JSON value and the field the error must name; the API answers 400 and the workflow fails with
``InvalidRequest``.

``HTTP_BAD_CASES`` are bodies that only an HTTP API can receive: not JSON, not ``application/json``,
too large, not UTF-8. The API answers 4xx before anything starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: (request, the field the error must name). Each is a request a caller could plausibly send.
BAD_REQUESTS: list[tuple[Any, str]] = [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "   \n\t "}, "prompt"),
    ({"prompt": None}, "prompt"),
    ({"prompt": 42}, "prompt"),
    ({"prompt": ["a", "b"]}, "prompt"),
    ({"prompt": "x" * 10_001}, "prompt"),
    ({"prompt": "bell \x07 here"}, "prompt"),
    ({"prompt": "nul \x00 byte"}, "prompt"),
    ({"prompt": "lone \ud800 surrogate"}, "prompt"),
    ({"prompt": "ok", "negative_prompt": 5}, "negative_prompt"),
    ({"prompt": "ok", "count": 0}, "count"),
    ({"prompt": "ok", "count": -1}, "count"),
    ({"prompt": "ok", "count": 41}, "count"),
    ({"prompt": "ok", "count": "four"}, "count"),
    ({"prompt": "ok", "count": 2.5}, "count"),
    ({"prompt": "ok", "model": ""}, "model"),
    ({"prompt": "ok", "model": "dall-e-3"}, "model"),
    ({"prompt": "ok", "model": "nova-canvas", "width": 1024}, "height"),
    ({"prompt": "ok", "width": 10, "height": 10}, "width"),
    ({"prompt": "ok", "width": 100_000, "height": 1024}, "width"),
    ({"prompt": "ok", "aspect_ratio": "wide"}, "aspect_ratio"),
    ({"prompt": "ok", "aspect_ratio": "7:3"}, "aspect_ratio"),
    ({"prompt": "ok", "quality": "ultra"}, "quality"),
    ({"prompt": "ok", "cfg_scale": 50}, "cfg_scale"),
    ({"prompt": "ok", "seed": -5}, "seed"),
    ({"prompt": "ok", "seed": 2**40}, "seed"),
    ({"prompt": "ok", "output_folder": "../../etc"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "/abs/path"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "a//b"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "a/./b"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "a\\b"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "sp ace"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "é/ü"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "/".join(["a"] * 11)}, "output_folder"),
    ({"prompt": "ok", "output_folder": ""}, "output_folder"),
    ({"prompt": "ok", "file_name_prefix": "../x"}, "file_name_prefix"),
    ({"prompt": "ok", "file_name_prefix": "a/b"}, "file_name_prefix"),
    ({"prompt": "ok", "file_name_prefix": ".hidden"}, "file_name_prefix"),
    ({"prompt": "ok", "file_name_prefix": "x" * 65}, "file_name_prefix"),
    ({"prompt": "ok", "file_name_prefix": "a..b"}, "file_name_prefix"),
    ({"prompt": "ok", "idempotency_key": "has space"}, "idempotency_key"),
    ({"prompt": "ok", "idempotency_key": "k" * 65}, "idempotency_key"),
    ({"prompt": "ok", "promt": "typo"}, "promt"),
    ({"prompt": "x" * 600, "model": "titan-image-v2"}, "prompt"),
    ({"prompt": "ok", "model": "titan-image-v2", "width": 1000, "height": 1000}, "width"),
    ({"prompt": "ok", "model": "nova-canvas", "width": 1000, "height": 1008}, "width"),
    ({"prompt": "ok", "model": "nova-canvas", "width": 2048, "height": 2048}, "width"),
    ({"prompt": "ok", "model": "nova-canvas", "width": 4096, "height": 512}, "width"),
    ({"prompt": "ok", "model": "nova-canvas", "style": "CUBISM"}, "style"),
    ({"prompt": "ok", "model": "nova-canvas", "seed": 2_147_483_647}, "seed"),
    ({"prompt": "ok", "model": "nova-canvas", "negative_prompt": "n" * 1025}, "negative_prompt"),
    ({"prompt": "ok", "model": "titan-image-v1", "style": "PHOTOREALISM"}, "style"),
    ({"prompt": "ok", "model": "titan-image-v1", "cfg_scale": 1.0}, "cfg_scale"),
    ({"prompt": "ok", "model": "sd3-5-large", "cfg_scale": 5}, "cfg_scale"),
    ({"prompt": "ok", "model": "stable-image-core", "quality": "premium"}, "quality"),
    ({"prompt": "ok", "model": "stable-image-ultra", "width": 1000, "height": 700}, "width"),
    ({"prompt": "ok", "model": "stable-image-core", "aspect_ratio": "4:3"}, "aspect_ratio"),
    (
        {"prompt": "ok", "model": "nova-canvas", "aspect_ratio": "1:1", "width": 512, "height": 512},
        "aspect_ratio",
    ),
    ({"prompt": "ok", "model": "nova-canvas", "aspect_ratio": "9:1"}, "aspect_ratio"),
    ("just a string", "request"),
    (["a", "list"], "request"),
    (None, "request"),
]

#: Request-level bad inputs not in :data:`BAD_REQUESTS`: (request, field named).
EXTRA_BAD_REQUESTS: list[tuple[Any, str]] = [
    # path traversal and odd characters in the storage names
    ({"prompt": "ok", "output_folder": "a/../b"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "..%2f..%2fetc"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "a\x00b"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "a\nb"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "\uff0e\uff0e/etc"}, "output_folder"),  # fullwidth dots
    ({"prompt": "ok", "output_folder": "a\u2215b"}, "output_folder"),  # division slash
    ({"prompt": "ok", "output_folder": "a\u200bb"}, "output_folder"),  # zero-width space
    ({"prompt": "ok", "output_folder": "C:\\temp"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "~/x"}, "output_folder"),
    ({"prompt": "ok", "output_folder": ".git"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "a?b#c"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "e\u0301"}, "output_folder"),  # combining accent (NFD)
    ({"prompt": "ok", "output_folder": "x" * 201}, "output_folder"),
    ({"prompt": "ok", "output_folder": 123}, "output_folder"),
    ({"prompt": "ok", "file_name_prefix": "a\u202eb"}, "file_name_prefix"),  # right-to-left override
    ({"prompt": "ok", "file_name_prefix": "img\r\nX-Injected: 1"}, "file_name_prefix"),
    ({"prompt": "ok", "file_name_prefix": "\U0001f338"}, "file_name_prefix"),
    ({"prompt": "ok", "file_name_prefix": ""}, "file_name_prefix"),
    ({"prompt": "ok", "file_name_prefix": "<script>"}, "file_name_prefix"),
    ({"prompt": "ok", "file_name_prefix": "a\\b"}, "file_name_prefix"),
    # unicode edge cases in the text
    ({"prompt": "\u3000\u00a0"}, "prompt"),  # ideographic and no-break spaces only
    ({"prompt": "\x1b[31mred"}, "prompt"),  # ANSI escape
    ({"prompt": "ok\x7f"}, "prompt"),  # DEL
    ({"prompt": "\U0001f338" * 10_001}, "prompt"),  # 10 001 characters outside the BMP
    ({"prompt": "ok", "negative_prompt": "\x00"}, "negative_prompt"),
    # wrong types
    ({"prompt": "ok", "count": None}, "count"),
    ({"prompt": "ok", "count": 1e100}, "count"),
    ({"prompt": "ok", "seed": 1.5}, "seed"),
    ({"prompt": "ok", "model": ["stable-image-core"]}, "model"),
    ({"prompt": "ok", "cfg_scale": float("inf")}, "cfg_scale"),
    # models and options a deployment refuses
    ({"prompt": "ok", "model": "amazon.titan-image-generator-v9:0"}, "model"),
    ({"prompt": "ok", "model": "STABLE-IMAGE-CORE"}, "model"),
    ({"prompt": "ok", "model": "nova-canvas", "width": 320, "height": 4096}, "width"),
    ({"prompt": "ok", "model": "titan-image-v1", "seed": 2_147_483_647}, "seed"),
    ({"prompt": "ok", "style": "PHOTOREALISM"}, "style"),
    ({"prompt": "ok", "idempotency_key": "../x"}, "idempotency_key"),
    ({"prompt": "ok", "execution_name": "x"}, "execution_name"),
    # an EventBridge event whose detail is bad
    ({"detail-type": "ImageGenerationRequested", "source": "x", "detail": {"prompt": ""}}, "prompt"),
]

#: Strict types and names: what API Gateway's schema refuses, every entry point refuses, with one message.
#: Numbers given as text, booleans and fractions for numbers (4.0 is a number, not an integer, in JSON
#: Schema draft 4), and control characters in names, at the very end too (Python's ``$`` matches before
#: a trailing newline; the patterns do not rely on it).
STRICT_BAD_REQUESTS: list[tuple[Any, str]] = [
    ({"prompt": "ok", "count": "4"}, "count"),
    ({"prompt": "ok", "count": 4.0}, "count"),
    ({"prompt": "ok", "count": 1e2}, "count"),
    ({"prompt": "ok", "count": False}, "count"),
    ({"prompt": "ok", "seed": "42"}, "seed"),
    ({"prompt": "ok", "seed": 42.0}, "seed"),
    ({"prompt": "ok", "seed": True}, "seed"),
    ({"prompt": "ok", "seed": [42]}, "seed"),
    ({"prompt": "ok", "cfg_scale": "7"}, "cfg_scale"),
    ({"prompt": "ok", "cfg_scale": "7.5"}, "cfg_scale"),
    ({"prompt": "ok", "cfg_scale": False}, "cfg_scale"),
    ({"prompt": "ok", "cfg_scale": float("nan")}, "cfg_scale"),
    ({"prompt": "ok", "model": "nova-canvas", "width": "1024", "height": 1024}, "width"),
    ({"prompt": "ok", "model": "nova-canvas", "width": 1024, "height": 1024.0}, "height"),
    ({"prompt": "ok", "output_folder": "images\n"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "images\t"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "a/b/\n"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "a\x7f"}, "output_folder"),
    ({"prompt": "ok", "output_folder": "a//"}, "output_folder"),
    ({"prompt": "ok", "file_name_prefix": "image\n"}, "file_name_prefix"),
    ({"prompt": "ok", "file_name_prefix": "image\t"}, "file_name_prefix"),
    ({"prompt": "ok", "file_name_prefix": "im\x00age"}, "file_name_prefix"),
    ({"prompt": "ok", "idempotency_key": "order-1\n"}, "idempotency_key"),
    ({"prompt": "ok", "idempotency_key": "order-1\t"}, "idempotency_key"),
    ({"prompt": "ok", "idempotency_key": "\x1border-1"}, "idempotency_key"),
    ({"prompt": "ok", "model": "nova-canvas", "style": "PHOTOREALISM\n"}, "style"),
    ({"prompt": "ok", "model": "nova-canvas", "style": "PHOTO\tREALISM"}, "style"),
    ({"prompt": "ok", "model": "stable-image-core\n"}, "model"),
    ({"prompt": "ok", "model": "stable-image-core\t"}, "model"),
    ({"prompt": "ok", "aspect_ratio": "16:9\n"}, "aspect_ratio"),
    ({"prompt": "ok", "quality": "premium\n", "model": "nova-canvas"}, "quality"),
    ({"prompt": "ok\x00"}, "prompt"),
    ({"prompt": "ok", "negative_prompt": "blurry\x0b"}, "negative_prompt"),
]

#: Parameters a model cannot honour exactly, which it once changed silently; each is refused now,
#: saying what the model takes.
UNHONOURED_REQUESTS: list[tuple[Any, str]] = [
    # a size snapped to a ratio: Stability models pick their own pixel size for an aspect ratio
    ({"prompt": "ok", "model": "stable-image-core", "width": 1920, "height": 1080}, "width"),
    ({"prompt": "ok", "model": "sd3-5-large", "height": 1024}, "height"),
    # an aspect ratio approximated by the nearest listed size
    ({"prompt": "ok", "model": "titan-image-v2", "aspect_ratio": "16:9"}, "aspect_ratio"),
    ({"prompt": "ok", "model": "titan-image-v1", "aspect_ratio": "4:1"}, "aspect_ratio"),
    # seeds wrapped at the model's maximum (image i gets seed+i)
    ({"prompt": "ok", "model": "sd3-5-large", "seed": 4_294_967_294, "count": 2}, "seed"),
    ({"prompt": "ok", "model": "nova-canvas", "seed": 2_147_483_640, "count": 10}, "seed"),
    ({"prompt": "ok", "model": "titan-image-v2", "seed": 2_147_483_646, "count": 2}, "seed"),
    # seed 0 asks Stability models for a random seed
    ({"prompt": "ok", "model": "stable-image-ultra", "seed": 0}, "seed"),
    ({"prompt": "ok", "model": "sd3-5-large", "seed": 0, "count": 1}, "seed"),
    ({"prompt": "ok", "model": "stable-image-core", "seed": 4_294_967_295, "count": 2}, "seed"),
    ({"prompt": "ok", "model": "sd3-5-large", "seed": 4_294_967_295}, "seed"),
]

#: Every request-level bad input: the unit suite's list, then the extras.
#: A key of the right shape that no caller's namespace holds: the cases below fail on their fields,
#: which are checked before any stored image is read.
_KEY = "0123456789ab/images/job-1/image-00-7.png"

#: Operations on a stored image (issue 16) that are wrong in their fields alone.
REFINE_BAD_REQUESTS: list[tuple[Any, str]] = [
    ({"source_image": "https://example.com/cat.png", "operation": "upscale"}, "source_image"),
    ({"source_image": "s3://other-bucket/cat.png", "operation": "upscale"}, "source_image"),
    ({"source_image": "0123456789ab/../secret.png", "operation": "upscale"}, "source_image"),
    ({"source_image": "0123456789ab/images/a.jpg", "operation": "upscale"}, "source_image"),
    ({"source_image": _KEY}, "operation"),
    ({"operation": "upscale"}, "source_image"),
    ({"source_image": _KEY, "operation": "sharpen"}, "operation"),
    ({"source_image": _KEY, "operation": "upscale", "upscale_mode": "8k"}, "upscale_mode"),
    ({"source_image": _KEY, "operation": "upscale", "strength": 0.5}, "strength"),
    ({"source_image": _KEY, "operation": "variation", "strength": 1.5}, "strength"),
    ({"source_image": _KEY, "operation": "search-and-replace", "prompt": "a dog"}, "search_prompt"),
    ({"source_image": _KEY, "operation": "inpaint", "prompt": "a dog"}, "mask_image"),
    (
        {"source_image": _KEY, "operation": "inpaint", "prompt": "x", "mask_prompt": "y", "mask_image": _KEY},
        "mask_image",
    ),
    ({"source_image": _KEY, "operation": "outpaint"}, "left"),
    ({"source_image": _KEY, "operation": "outpaint", "left": 2001}, "left"),
    ({"source_image": _KEY, "operation": "outpaint", "up": -1}, "up"),
    ({"source_image": _KEY, "operation": "style-transfer"}, "style_image"),
    (
        {"source_image": _KEY, "operation": "upscale", "upscale_mode": "creative", "creativity": 0.9},
        "creativity",
    ),
    ({"source_image": _KEY, "operation": "upscale", "seed": 7}, "seed"),
    ({"source_image": _KEY, "operation": "remove-background", "count": 4}, "count"),
    ({"source_image": _KEY, "operation": "remove-background", "prompt": "a cat"}, "prompt"),
    ({"source_image": _KEY, "operation": "variation", "model": "stable-image-core"}, "model"),
    ({"source_image": _KEY, "operation": "variation", "aspect_ratio": "16:9"}, "aspect_ratio"),
    ({"prompt": "a cat", "model": "stable-fast-upscale"}, "model"),
    (
        {"source_image": _KEY, "operation": "style-transfer", "style_image": _KEY, "change_strength": 0.05},
        "change_strength",
    ),
    (
        {"source_image": _KEY, "operation": "inpaint", "prompt": "x", "mask_prompt": "y", "grow_mask": 21},
        "grow_mask",
    ),
]

SCHEMA_BAD_REQUESTS: list[tuple[Any, str]] = [
    *BAD_REQUESTS,
    *EXTRA_BAD_REQUESTS,
    *STRICT_BAD_REQUESTS,
    *UNHONOURED_REQUESTS,
    *REFINE_BAD_REQUESTS,
]

#: Bad inputs in disguise, which the request model once accepted: prompts that draw nothing and
#: booleans that pydantic's lax numbers took as 1 or 0.
DISGUISED_BAD_REQUESTS: list[tuple[Any, str, str]] = [
    ({"prompt": "\u200b\u200b"}, "prompt", "only zero-width spaces: an empty prompt in disguise"),
    ({"prompt": "\ufeff"}, "prompt", "only a byte-order mark"),
    ({"prompt": "\u202e\u2066"}, "prompt", "only bidirectional controls"),
    ({"prompt": "ok", "count": True}, "count", "a boolean taken as 1 image"),
    ({"prompt": "ok", "seed": False}, "seed", "a boolean taken as seed 0"),
    ({"prompt": "ok", "cfg_scale": True}, "cfg_scale", "a boolean taken as cfg_scale 1.0"),
    ({"prompt": "ok", "negative_prompt": "x", "width": True, "height": 512}, "width", "a boolean width"),
]


@dataclass(frozen=True)
class HttpCase:
    """A body only an HTTP API can receive, and the answer it must get."""

    name: str
    body: bytes
    content_type: str | None
    status: int
    field: str


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


#: Bodies that are not a JSON request at all (the API's own checks, before any validation).
HTTP_BAD_CASES: list[HttpCase] = [
    HttpCase("empty body", b"", "application/json", 400, "body"),
    HttpCase("not JSON", b"prompt=a red porsche", "application/json", 400, "body"),
    HttpCase("truncated JSON", b'{"prompt": "a red', "application/json", 400, "body"),
    HttpCase("not UTF-8", b'{"prompt": "\xff\xfe"}', "application/json", 400, "body"),
    HttpCase("lone surrogate escape", b'{"prompt": "a \\ud800 b"}', "application/json", 400, "prompt"),
    HttpCase("JSON null", b"null", "application/json", 400, "request"),
    HttpCase("JSON array", b'[{"prompt": "ok"}]', "application/json", 400, "request"),
    HttpCase(
        "duplicate keys, last empty", b'{"prompt": "ok", "prompt": ""}', "application/json", 400, "prompt"
    ),
    HttpCase(
        "duplicate keys, both valid",
        b'{"prompt": "ok", "count": 1, "count": 2}',
        "application/json",
        400,
        "count",
    ),
    HttpCase("text/plain", _json({"prompt": "ok"}), "text/plain", 415, "Content-Type"),
    HttpCase("form encoded", b"prompt=ok", "application/x-www-form-urlencoded", 415, "Content-Type"),
    HttpCase("no content type", _json({"prompt": "ok"}), None, 415, "Content-Type"),
    HttpCase("oversized body", _json({"prompt": "x" * 70_000}), "application/json", 413, "body"),
    HttpCase("oversized by padding", b'{"prompt": "ok"}' + b" " * 70_000, "application/json", 413, "body"),
]

#: An HTTP body that should get a 4xx but does not (known bug, see the xfail test).
DEEPLY_NESTED = HttpCase(
    "deeply nested JSON (40 KB)", b"[" * 20_000 + b"]" * 20_000, "application/json", 400, "body"
)


def distinct_count() -> int:
    """How many distinct bad inputs the catalogue holds (request-level and HTTP-level)."""
    return len({repr(raw) for raw, _ in SCHEMA_BAD_REQUESTS}) + len({c.body for c in HTTP_BAD_CASES})
