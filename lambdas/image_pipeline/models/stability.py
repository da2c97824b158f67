"""Stability AI models on Bedrock (SD3.5 Large, Stable Image Core, Stable Image Ultra).

They take an aspect ratio instead of a size, generate one image per call and return the seed used
with a finish reason per image (``Filter reason: prompt`` and so on).
"""

from __future__ import annotations

from math import gcd
from typing import Any, ClassVar

from image_pipeline.contract.errors import FieldError, ModelResponseInvalid, ModelUnavailable
from image_pipeline.contract.request import ImageRequest
from image_pipeline.models.base import ImageModelAdapter, Outcome, decode_image
from image_pipeline.models.ids import BEDROCK_MODEL_IDS

ASPECT_RATIOS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
_FINISH_REASONS = {
    "Filter reason: prompt": "CONTENT_FILTERED_INPUT",
    "Filter reason: input image": "CONTENT_FILTERED_INPUT",
    "Filter reason: output image": "CONTENT_FILTERED_OUTPUT",
}


def _reduce(width: int, height: int) -> str:
    g = gcd(width, height)
    return f"{width // g}:{height // g}"


class _Stability(ImageModelAdapter):
    provider = "Stability AI"
    max_seed = 4_294_967_294
    prompt_max_chars = 10_000
    negative_max_chars = 10_000
    extra_body: ClassVar[dict[str, Any]] = {}

    def validate(self, request: ImageRequest) -> list[FieldError]:
        errors = self._common_checks(request)
        if request.aspect_ratio is not None:
            if request.width is not None or request.height is not None:
                errors.append(
                    FieldError("aspect_ratio", "give either aspect_ratio or width/height, not both")
                )
            elif request.aspect_ratio not in ASPECT_RATIOS:
                errors.append(
                    FieldError("aspect_ratio", f"{self.registry_id} takes one of {', '.join(ASPECT_RATIOS)}")
                )
        elif (request.width is None) != (request.height is None):
            missing = "height" if request.height is None else "width"
            errors.append(FieldError(missing, "give width and height together"))
        elif request.width is not None and request.height is not None:
            ratio = _reduce(request.width, request.height)
            if ratio not in ASPECT_RATIOS:
                errors.append(
                    FieldError(
                        "width",
                        f"{self.registry_id} takes an aspect ratio, not a size: {request.width}x"
                        f"{request.height} is {ratio}; use aspect_ratio, one of {', '.join(ASPECT_RATIOS)}",
                    )
                )
        for name in ("quality", "cfg_scale", "style"):
            if getattr(request, name) is not None:
                errors.append(FieldError(name, f"not supported by {self.registry_id}"))
        return errors

    def normalize(self, request: ImageRequest) -> dict[str, Any]:
        aspect = request.aspect_ratio
        if aspect is None and request.width is not None and request.height is not None:
            aspect = _reduce(request.width, request.height)
        return {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "aspect_ratio": aspect or "1:1",
            "count": request.count,
            "file_name_prefix": request.file_name_prefix,
            "output_folder": request.output_folder,
        }

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "aspect_ratios": list(ASPECT_RATIOS)}

    def build_body(self, params: dict[str, Any], seed: int) -> dict[str, Any]:
        body: dict[str, Any] = {
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


class SD35Large(_Stability):
    registry_id = "sd3-5-large"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Stability AI Stable Diffusion 3.5 Large"
    extra_body: ClassVar[dict[str, Any]] = {"mode": "text-to-image"}


class StableImageCore(_Stability):
    registry_id = "stable-image-core"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Stability AI Stable Image Core"


class StableImageUltra(_Stability):
    registry_id = "stable-image-ultra"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Stability AI Stable Image Ultra"
