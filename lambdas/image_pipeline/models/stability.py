"""Stability AI models on Bedrock (SD3.5 Large, Stable Image Core, Stable Image Ultra).

They take an aspect ratio instead of a size, generate one image per call and return the seed used
with a finish reason per image (``Filter reason: prompt`` and so on).

Each limit cites the AWS page it comes from (read 2026-11-30; the request bodies are transcribed in
``tests/schemas/bedrock``). What a model cannot take exactly is refused with what it takes: a size
(width/height) is not turned into an aspect ratio (the model would pick another size), and seed 0, which
asks these models for a random seed, is not sent as a seed.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from math import gcd
from typing import Any, ClassVar

from image_pipeline.contract.errors import FieldError, ModelResponseInvalid, ModelUnavailable
from image_pipeline.contract.request import ImageRequest
from image_pipeline.models.base import ImageModelAdapter, Outcome, decode_image, source_bytes
from image_pipeline.models.ids import BEDROCK_MODEL_IDS
from image_pipeline.models.image_limits import SD35_IMAGE, ULTRA_IMAGE, ImageLimits

#: ``aspect_ratio`` of all three pages (Enum: 16:9, 1:1, 21:9, 2:3, 3:2, 4:5, 5:4, 9:16, 9:21).
ASPECT_RATIOS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
#: A variation's ``strength`` when the request gives none: Stable Image Ultra's documented default
#: ("strength ... Default: 0.35"); SD3.5 Large requires one and documents no default.
VARIATION_STRENGTH = 0.35
_FINISH_REASONS = {
    "Filter reason: prompt": "CONTENT_FILTERED_INPUT",
    "Filter reason: input image": "CONTENT_FILTERED_INPUT",
    "Filter reason: output image": "CONTENT_FILTERED_OUTPUT",
}


def _reduce(width: int, height: int) -> str:
    g = gcd(width, height)
    return f"{width // g}:{height // g}"


def parse_stability_answer(payload: dict[str, Any], seed: int) -> Outcome:
    """One image (or a filter reason) from a Stability model's answer: ``seeds``, ``finish_reasons``
    (``Filter reason: prompt``/``input image``/``output image``, ``Inference error`` or null) and ``images``."""
    reasons = payload.get("finish_reasons") or [None]
    seeds = payload.get("seeds") or [seed]
    reason = reasons[0]
    used_seed = int(seeds[0]) if seeds and seeds[0] is not None else seed
    if reason in _FINISH_REASONS:
        return Outcome(seed=used_seed, reason_code=_FINISH_REASONS[reason], message=reason)
    if reason is not None:
        raise ModelUnavailable(f"the model finished with {reason!r}")
    images = payload.get("images") or []
    if not images:
        raise ModelResponseInvalid("the model returned no image")
    return Outcome(image=decode_image(images[0]), seed=used_seed)


class _Stability(ImageModelAdapter):
    provider = "Stability AI"
    # "seed ... (Omit this parameter or pass 0 to use a random seed.)": 0 is not a seed to these models,
    # so a request's seed 0 would silently become a random one; random seeds are drawn from 1 up.
    min_seed = 1
    seed_note = " (0 asks it for a random seed: leave seed out for random seeds)"
    # Prompt "Minimum 0, Maximum 10,000" characters on each page: ImageRequest still asks for a prompt
    # that draws something (1 character or more, not only whitespace).
    prompt_max_chars = 10_000
    negative_max_chars = 10_000
    extra_body: ClassVar[dict[str, Any]] = {}
    # The prompt cache serves an earlier image of the same body: the pages say a seed guides the
    # generation's randomness (model_facts.json, "seed"). min_seed 1 keeps seed 0 (random) out.

    def validate(self, request: ImageRequest) -> list[FieldError]:
        errors = self._common_checks(request)
        ratios = ", ".join(ASPECT_RATIOS)
        if request.operation == "variation":
            # Image to image: the size follows the source ("aspect_ratio ... valid for text-to-image only").
            for name in ("aspect_ratio", "width", "height"):
                if getattr(request, name) is not None:
                    errors.append(self.refusal(name, "the size of source_image in a variation", f"a {name}"))
        elif request.width is not None or request.height is not None:
            errors.append(self._size_refusal(request.width, request.height))
        elif request.aspect_ratio is not None and request.aspect_ratio not in ASPECT_RATIOS:
            errors.append(self.refusal("aspect_ratio", f"aspect ratios {ratios}", request.aspect_ratio))
        for name in ("quality", "cfg_scale", "style"):
            if getattr(request, name) is not None:
                errors.append(self.not_taken(name))
        return errors

    def _size_refusal(self, width: int | None, height: int | None) -> FieldError:
        """These models take an aspect ratio and pick the pixel size themselves: no width or height
        can be honoured, whatever its ratio."""
        takes = f"an aspect_ratio ({', '.join(ASPECT_RATIOS)}) and picks the size itself"
        if width is None or height is None:
            field = "width" if width is not None else "height"
            return self.refusal(field, takes, f"a {field}")
        ratio = _reduce(width, height)
        instead = f"send aspect_ratio {ratio}" if ratio in ASPECT_RATIOS else f"{ratio} is none of those"
        return self.refusal("width", takes, f"a size: {width}x{height} ({instead})")

    def normalize(self, request: ImageRequest) -> dict[str, Any]:
        common = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "count": request.count,
            "file_name_prefix": request.file_name_prefix,
            "output_folder": request.output_folder,
        }
        if request.operation == "variation":
            strength = VARIATION_STRENGTH if request.strength is None else request.strength
            return {
                **common,
                "operation": "variation",
                "source_image": request.source_image,
                "operation_parameters": {"strength": strength},
            }
        return {**common, "aspect_ratio": request.aspect_ratio or "1:1"}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "aspect_ratios": list(ASPECT_RATIOS)}

    def build_body(
        self, params: dict[str, Any], seed: int, inputs: Mapping[str, bytes] | None = None
    ) -> dict[str, Any]:
        if params.get("operation") == "variation":
            body = self.image_to_image_body(params, seed, source_bytes(inputs, "source_image"))
        else:
            body = {
                "prompt": params["prompt"],
                "aspect_ratio": params["aspect_ratio"],
                "seed": seed,
                "output_format": "png",
                **self.extra_body,
            }
        if params.get("negative_prompt"):
            body["negative_prompt"] = params["negative_prompt"]
        return body

    def parse_response(self, payload: dict[str, Any], seed: int) -> Outcome:
        return parse_stability_answer(payload, seed)

    def image_to_image_body(self, params: dict[str, Any], seed: int, image: bytes) -> dict[str, Any]:
        """A variation: the source as ``image`` with ``strength`` (Stable Image Ultra's image-to-image
        takes ``image`` and ``strength`` with no ``mode``; SD3.5 adds ``mode: image-to-image``)."""
        return {
            "prompt": params.get("prompt") or "",
            "image": base64.b64encode(image).decode("ascii"),
            "strength": params["operation_parameters"]["strength"],
            "seed": seed,
            "output_format": "png",
        }


class SD35Large(_Stability):
    """https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-diffusion-3-5-large.html:
    seed 0 to 4294967294, "Default 0 (random seed)"."""

    registry_id = "sd3-5-large"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Stability AI Stable Diffusion 3.5 Large"
    max_seed = 4_294_967_294
    extra_body: ClassVar[dict[str, Any]] = {"mode": "text-to-image"}
    # "image-to-image requires the prompt, image, and strength parameters" (same page).
    operations = frozenset({"variation"})
    input_limits: ClassVar[Mapping[str, ImageLimits]] = {"source_image": SD35_IMAGE}

    def image_to_image_body(self, params: dict[str, Any], seed: int, image: bytes) -> dict[str, Any]:
        return {**super().image_to_image_body(params, seed, image), "mode": "image-to-image"}


class StableImageCore(_Stability):
    """https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-diffusion-stable-image-core-text-image-request-response.html:
    seed "Range: 0 to 4294967295" ("Omit this parameter or pass 0 to use a random seed")."""

    registry_id = "stable-image-core"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Stability AI Stable Image Core"
    max_seed = 4_294_967_295


class StableImageUltra(_Stability):
    """https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-diffusion-stable-ultra-text-image-request-response.html:
    seed "Range: 0 to 4294967295"."""

    registry_id = "stable-image-ultra"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Stability AI Stable Image Ultra"
    max_seed = 4_294_967_295
    # "(Image to image, optional) image ... strength Range: 0.0 to 1.0. Default: 0.35." (same page).
    operations = frozenset({"variation"})
    input_limits: ClassVar[Mapping[str, ImageLimits]] = {"source_image": ULTRA_IMAGE}
