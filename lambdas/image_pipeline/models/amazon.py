"""Amazon Titan Image Generator G1 (v1, v2) and Amazon Nova Canvas: the TEXT_IMAGE task format.

Each limit cites the AWS page it comes from (read 2026-11-30; the request bodies are transcribed in
``tests/schemas/bedrock``). A value a model cannot take exactly is refused with what it takes: sizes are
never snapped, an aspect ratio becomes a size of exactly that ratio or is refused, cfg_scale is never
rounded or clamped, and a seed range is checked for the last image (seed+count-1) too.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import gcd, lcm
from typing import Any, ClassVar

from image_pipeline.contract.errors import FieldError, ModelResponseInvalid
from image_pipeline.contract.request import ImageRequest
from image_pipeline.models.base import ImageModelAdapter, Outcome, decode_image
from image_pipeline.models.ids import BEDROCK_MODEL_IDS

_FILTER_PHRASE = "blocked by our content filters"

#: Titan's sizes: "The following sizes are permissible" on
#: https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-image.html (a table the
#: readable copies elide; these 25 are the copies' list, "unconfirmed" in the transcribed schema).
TITAN_SIZES: tuple[tuple[int, int], ...] = (
    (1024, 1024), (768, 768), (512, 512), (768, 1152), (384, 576), (1152, 768), (576, 384),
    (768, 1280), (384, 640), (1280, 768), (640, 384), (896, 1152), (448, 576), (1152, 896),
    (576, 448), (768, 1408), (384, 704), (1408, 768), (704, 384), (640, 1408), (320, 704),
    (1408, 640), (704, 320), (1152, 640), (1173, 640),
)  # fmt: skip

#: Nova Canvas's ``style`` values: https://docs.aws.amazon.com/nova/latest/userguide/image-gen-req-resp-structure.html
NOVA_STYLES = (
    "3D_ANIMATED_FAMILY_FILM", "DESIGN_SKETCH", "FLAT_VECTOR_ILLUSTRATION", "GRAPHIC_NOVEL_ILLUSTRATION",
    "MAXIMALISM", "MIDCENTURY_RETRO", "PHOTOREALISM", "SOFT_DIGITAL_PAINTING",
)  # fmt: skip


def _reduced(aspect: str) -> tuple[int, int]:
    """``16:9`` -> (16, 9); ``2:2`` -> (1, 1)."""
    w, h = (int(x) for x in aspect.split(":"))
    g = gcd(w, h)
    return w // g, h // g


def _ratios(sizes: tuple[tuple[int, int], ...]) -> tuple[str, ...]:
    """The aspect ratios of ``sizes`` that ``aspect_ratio`` can name (terms 1 to 99), in order."""
    reduced = (_reduced(f"{w}:{h}") for w, h in sizes)
    return tuple(dict.fromkeys(f"{w}:{h}" for w, h in reduced if w <= 99 and h <= 99))


TITAN_RATIOS = _ratios(TITAN_SIZES)


class _AmazonTextImage(ImageModelAdapter):
    provider = "Amazon"
    # Never served from the prompt cache: the pages describe seed as giving a *similar* image
    # (model_facts.json, "seed": the wording, page and status of each model).
    cfg_default: ClassVar[float] = 8.0
    cfg_min: ClassVar[float] = 1.1
    cfg_max: ClassVar[float] = 10.0
    default_size: ClassVar[tuple[int, int]] = (1024, 1024)

    def _size_errors(self, width: int, height: int) -> list[FieldError]:
        raise NotImplementedError

    def _size_for_aspect(self, aspect: str) -> tuple[int, int] | FieldError:
        """A size of exactly ``aspect``, or the refusal saying which ratios the model can draw."""
        raise NotImplementedError

    def _resolve_size(self, request: ImageRequest) -> tuple[int, int] | FieldError:
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
            size = self._resolve_size(request)
            if isinstance(size, FieldError):
                errors.append(size)
            else:
                errors.extend(self._size_errors(*size))
        if request.cfg_scale is not None and not self.cfg_min <= request.cfg_scale <= self.cfg_max:
            errors.append(
                self.refusal(
                    "cfg_scale", f"cfg_scale from {self.cfg_min} to {self.cfg_max}", str(request.cfg_scale)
                )
            )
        if request.style is not None:
            errors.extend(self._style_errors(request.style))
        return errors

    def _style_errors(self, style: str) -> list[FieldError]:
        return [self.not_taken("style")]

    def normalize(self, request: ImageRequest) -> dict[str, Any]:
        size = self._resolve_size(request)
        if isinstance(size, FieldError):  # validate refused it: normalize is for checked requests
            raise ValueError(str(size))
        width, height = size
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

    def build_body(
        self, params: dict[str, Any], seed: int, inputs: Mapping[str, bytes] | None = None
    ) -> dict[str, Any]:
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
    """Limits: https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-image.html and
    https://docs.aws.amazon.com/bedrock/latest/userguide/titan-image-models.html (text and negativeText at
    most 512 characters). cfgScale 1.1 to 10.0 (default 8.0) and seed 0 to 2,147,483,646 sit in tables the
    readable copies elide; these are the values copied from them (AWS's own example draws seeds up to
    2,147,483,647: the lower maximum is kept, as both agree on it)."""

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
        return [self.refusal("width", f"sizes {sizes}", f"{width}x{height}")]

    def _size_for_aspect(self, aspect: str) -> tuple[int, int] | FieldError:
        w, h = _reduced(aspect)
        exact = [(sw, sh) for sw, sh in TITAN_SIZES if sw * h == sh * w]
        if exact:
            return max(exact, key=lambda s: s[0] * s[1])  # the largest listed size of exactly that ratio
        ratios = ", ".join(TITAN_RATIOS)
        return self.refusal(
            "aspect_ratio", f"the aspect ratios of its sizes, {ratios} (or width and height of one)", aspect
        )


class TitanImageV2(TitanImageV1):
    registry_id = "titan-image-v2"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Amazon Titan Image Generator G1 v2"


class NovaCanvas(_AmazonTextImage):
    """Limits: https://docs.aws.amazon.com/nova/latest/userguide/image-gen-req-resp-structure.html (text and
    negativeText 1 to 1024 characters; cfgScale 1.1 to 10, default 6.5; seed 0 to 2,147,483,646 on the
    current page, which an older AWS code example's "0 to 858,993,459" predates) and
    https://docs.aws.amazon.com/nova/latest/userguide/image-gen-access.html#image-gen-resolutions (each
    side 320 to 4096 and divisible by 16, aspect ratio 1:4 to 4:1, fewer than 4,194,304 pixels: quoted
    from that page by others; so 2048x2048, exactly 4,194,304, is refused)."""

    registry_id = "nova-canvas"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Amazon Nova Canvas"
    max_seed = 2_147_483_646
    prompt_max_chars = 1024
    negative_max_chars = 1024
    cfg_default = 6.5
    min_side: ClassVar[int] = 320
    max_side: ClassVar[int] = 4096
    side_multiple: ClassVar[int] = 16
    max_pixels_exclusive: ClassVar[int] = 4_194_304
    #: An aspect ratio alone gets the largest size of exactly that ratio up to this many pixels.
    aspect_target_pixels: ClassVar[int] = 1024 * 1024

    def _size_errors(self, width: int, height: int) -> list[FieldError]:
        errors = []
        sides = f"{self.min_side} to {self.max_side}, divisible by {self.side_multiple}"
        for name, value in (("width", width), ("height", height)):
            if not self.min_side <= value <= self.max_side or value % self.side_multiple:
                errors.append(self.refusal(name, f"{name}s from {sides}", str(value)))
        if not errors:
            if not 0.25 <= width / height <= 4.0:
                errors.append(self.refusal("width", "width:height from 1:4 to 4:1", f"{width}x{height}"))
            if width * height >= self.max_pixels_exclusive:
                errors.append(
                    self.refusal(
                        "width",
                        f"fewer than {self.max_pixels_exclusive:,} pixels (width x height)",
                        f"{width}x{height} = {width * height:,}",
                    )
                )
        return errors

    def _size_for_aspect(self, aspect: str) -> tuple[int, int] | FieldError:
        w, h = _reduced(aspect)
        if not 0.25 <= w / h <= 4.0:
            return self.refusal("aspect_ratio", "aspect ratios from 1:4 to 4:1", aspect)
        # The smallest step with both sides divisible by 16, and every size of exactly w:h it makes.
        step = lcm(
            self.side_multiple // gcd(self.side_multiple, w), self.side_multiple // gcd(self.side_multiple, h)
        )
        sizes = [(w * step * k, h * step * k) for k in range(1, self.max_side // (max(w, h) * step) + 1)]
        valid = [s for s in sizes if not self._size_errors(*s)]
        if not valid:
            return self.refusal(
                "aspect_ratio", "aspect ratios it has a size of (or width and height)", aspect
            )
        within = [s for s in valid if s[0] * s[1] <= self.aspect_target_pixels]
        return max(within, key=lambda s: s[0] * s[1]) if within else valid[0]

    def _style_errors(self, style: str) -> list[FieldError]:
        if style in NOVA_STYLES:
            return []
        return [self.refusal("style", f"styles {', '.join(NOVA_STYLES)}", f'"{style}"')]
