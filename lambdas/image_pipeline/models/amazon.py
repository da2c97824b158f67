"""Amazon Titan Image Generator G1 (v1, v2) and Amazon Nova Canvas: the TEXT_IMAGE task format."""

from __future__ import annotations

from math import gcd
from typing import Any, ClassVar

from image_pipeline.contract.errors import FieldError, ModelResponseInvalid
from image_pipeline.contract.request import ImageRequest
from image_pipeline.models.base import ImageModelAdapter, Outcome, decode_image
from image_pipeline.models.ids import BEDROCK_MODEL_IDS

_FILTER_PHRASE = "blocked by our content filters"

TITAN_SIZES: tuple[tuple[int, int], ...] = (
    (1024, 1024), (768, 768), (512, 512), (768, 1152), (384, 576), (1152, 768), (576, 384),
    (768, 1280), (384, 640), (1280, 768), (640, 384), (896, 1152), (448, 576), (1152, 896),
    (576, 448), (768, 1408), (384, 704), (1408, 768), (704, 384), (640, 1408), (320, 704),
    (1408, 640), (704, 320), (1152, 640), (1173, 640),
)  # fmt: skip

NOVA_STYLES = (
    "3D_ANIMATED_FAMILY_FILM", "DESIGN_SKETCH", "FLAT_VECTOR_ILLUSTRATION", "GRAPHIC_NOVEL_ILLUSTRATION",
    "MAXIMALISM", "MIDCENTURY_RETRO", "PHOTOREALISM", "SOFT_DIGITAL_PAINTING",
)  # fmt: skip


def _ratio(aspect: str) -> float:
    w, h = (int(x) for x in aspect.split(":"))
    return w / h


class _AmazonTextImage(ImageModelAdapter):
    provider = "Amazon"
    cfg_default: ClassVar[float] = 8.0
    cfg_min: ClassVar[float] = 1.1
    cfg_max: ClassVar[float] = 10.0
    default_size: ClassVar[tuple[int, int]] = (1024, 1024)

    def _size_errors(self, width: int, height: int) -> list[FieldError]:
        raise NotImplementedError

    def _size_for_aspect(self, aspect: str) -> tuple[int, int]:
        raise NotImplementedError

    def _resolve_size(self, request: ImageRequest) -> tuple[int, int]:
        if request.width is not None and request.height is not None:
            return request.width, request.height
        if request.aspect_ratio is not None:
            return self._size_for_aspect(request.aspect_ratio)
        return self.default_size

    def validate(self, request: ImageRequest) -> list[FieldError]:
        errors = self._common_checks(request)
        if (request.width is None) != (request.height is None):
            missing = "height" if request.height is None else "width"
            errors.append(FieldError(missing, "give width and height together"))
        elif request.width is not None and request.aspect_ratio is not None:
            errors.append(FieldError("aspect_ratio", "give either aspect_ratio or width/height, not both"))
        else:
            if request.aspect_ratio is not None and not 0.25 <= _ratio(request.aspect_ratio) <= 4.0:
                errors.append(FieldError("aspect_ratio", "must be between 1:4 and 4:1"))
            else:
                errors.extend(self._size_errors(*self._resolve_size(request)))
        if request.cfg_scale is not None and not self.cfg_min <= request.cfg_scale <= self.cfg_max:
            errors.append(
                FieldError("cfg_scale", f"{self.registry_id} takes {self.cfg_min} to {self.cfg_max}")
            )
        if request.style is not None:
            errors.extend(self._style_errors(request.style))
        return errors

    def _style_errors(self, style: str) -> list[FieldError]:
        return [FieldError("style", f"{self.registry_id} has no style presets")]

    def normalize(self, request: ImageRequest) -> dict[str, Any]:
        width, height = self._resolve_size(request)
        return {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "width": width,
            "height": height,
            "quality": request.quality or "standard",
            "cfg_scale": request.cfg_scale if request.cfg_scale is not None else self.cfg_default,
            "style": request.style,
            "count": request.count,
            "file_name_prefix": request.file_name_prefix,
            "output_folder": request.output_folder,
        }

    def build_body(self, params: dict[str, Any], seed: int) -> dict[str, Any]:
        text: dict[str, Any] = {"text": params["prompt"]}
        if params.get("negative_prompt"):
            text["negativeText"] = params["negative_prompt"]
        if params.get("style"):
            text["style"] = params["style"]
        return {
            "taskType": "TEXT_IMAGE",
            "textToImageParams": text,
            "imageGenerationConfig": {
                "numberOfImages": 1,
                "quality": params["quality"],
                "cfgScale": params["cfg_scale"],
                "seed": seed,
                "width": params["width"],
                "height": params["height"],
            },
        }

    def parse_response(self, payload: dict[str, Any], seed: int) -> Outcome:
        error = payload.get("error")
        images = payload.get("images") or []
        if error and _FILTER_PHRASE in str(error) and not images:
            return Outcome(seed=seed, reason_code="CONTENT_FILTERED_OUTPUT", message=str(error))
        if not images:
            raise ModelResponseInvalid(f"the model returned no image (error: {error!r})")
        return Outcome(image=decode_image(images[0]), seed=seed)


class TitanImageV1(_AmazonTextImage):
    registry_id = "titan-image-v1"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Amazon Titan Image Generator G1"
    max_seed = 2_147_483_646
    prompt_max_chars = 512
    negative_max_chars = 512

    def _size_errors(self, width: int, height: int) -> list[FieldError]:
        if (width, height) in TITAN_SIZES:
            return []
        sizes = ", ".join(f"{w}x{h}" for w, h in TITAN_SIZES)
        return [FieldError("width", f"{width}x{height} is not a {self.registry_id} size; use one of {sizes}")]

    def _size_for_aspect(self, aspect: str) -> tuple[int, int]:
        target = _ratio(aspect)
        # The largest listed size whose ratio is closest to the one asked for.
        return min(TITAN_SIZES, key=lambda s: (round(abs(s[0] / s[1] - target), 2), -s[0] * s[1]))


class TitanImageV2(TitanImageV1):
    registry_id = "titan-image-v2"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Amazon Titan Image Generator G1 v2"


class NovaCanvas(_AmazonTextImage):
    registry_id = "nova-canvas"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Amazon Nova Canvas"
    max_seed = 858_993_459
    prompt_max_chars = 1024
    negative_max_chars = 1024
    cfg_default = 6.5

    def _size_errors(self, width: int, height: int) -> list[FieldError]:
        errors = []
        for name, value in (("width", width), ("height", height)):
            if not 320 <= value <= 4096 or value % 16:
                errors.append(FieldError(name, f"{self.registry_id} takes 320 to 4096, divisible by 16"))
        if not errors:
            if not 0.25 <= width / height <= 4.0:
                errors.append(FieldError("width", "aspect ratio must be between 1:4 and 4:1"))
            if width * height >= 4_194_304:
                errors.append(FieldError("width", "width x height must be below 4,194,304 pixels"))
        return errors

    def _size_for_aspect(self, aspect: str) -> tuple[int, int]:
        w, h = (int(x) for x in aspect.split(":"))
        g = gcd(w, h)
        w, h = w // g, h // g
        scale = (1024 * 1024 / (w * h)) ** 0.5
        width = max(320, min(4096, int(w * scale) // 16 * 16))
        height = max(320, min(4096, int(h * scale) // 16 * 16))
        return width, height

    def _style_errors(self, style: str) -> list[FieldError]:
        if style in NOVA_STYLES:
            return []
        return [FieldError("style", f"must be one of {', '.join(NOVA_STYLES)}")]
