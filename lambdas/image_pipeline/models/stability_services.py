"""Stability AI Image Services on Bedrock: operations on a stored image (upscale, remove the background,
search and replace, inpaint, outpaint, style transfer).

Every body field, range and input limit is from the Image Services page
(https://docs.aws.amazon.com/bedrock/latest/userguide/stable-image-services.html, read 2026-11-30; its
sections are transcribed in ``tests/schemas/bedrock/stability.stable-*.json``, which the Bedrock
stand-in checks every body against). The answer has the shape of the Stability text-to-image models'
(``seeds``, ``finish_reasons``, ``images``), so :class:`~image_pipeline.models.stability._Stability`'s
reading of it is shared. These models are reached through the ``us.`` cross-Region inference profiles
(``model_facts.json``).

What a service cannot take exactly is refused with what it takes: a range narrower than the request
model's (``creativity`` 0.1 to 0.5 for the upscales) is checked here, an option a service does not have
is "takes no ...", and a service without a seed (Fast Upscale, Remove Background) makes one image: more
would be the same image paid for again.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from image_pipeline.contract.errors import FieldError
from image_pipeline.contract.request import ImageRequest
from image_pipeline.models.base import ImageModelAdapter, Outcome, source_bytes
from image_pipeline.models.ids import BEDROCK_MODEL_IDS
from image_pipeline.models.image_limits import (
    CREATIVE_UPSCALE_IMAGE,
    EDIT_IMAGE,
    FAST_UPSCALE_IMAGE,
    ImageLimits,
)
from image_pipeline.models.stability import parse_stability_answer

#: ``style_preset`` of Creative Upscale, Search and Replace, Inpaint and Outpaint (the request's ``style``).
STYLE_PRESETS = (
    "3d-model", "analog-film", "anime", "cinematic", "comic-book", "digital-art", "enhance", "fantasy-art",
    "isometric", "line-art", "low-poly", "modeling-compound", "neon-punk", "origami", "photographic",
    "pixel-art", "tile-texture",
)  # fmt: skip

PromptUse = Literal["required", "optional", "none"]
#: Request fields that never reach these services (the size follows the source image).
_NOT_TAKEN = ("aspect_ratio", "width", "height", "quality", "cfg_scale")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class _ImageService(ImageModelAdapter):
    """One Stability AI Image Service: one image per call, from a stored source image
    (https://docs.aws.amazon.com/bedrock/latest/userguide/stable-image-services.html, read 2026-11-30)."""

    provider = "Stability AI"
    text_to_image = False
    # "seed ... Range 0 to 4294967294. Default 0" on each section; 0 asks for a random seed.
    min_seed = 1
    max_seed = 4_294_967_294
    seed_note = " (0 asks it for a random seed: leave seed out for random seeds)"
    # "Minimum 0 and Maximum 10000 characters" (prompt), "Maximum 10000 characters" (negative_prompt).
    prompt_max_chars = 10_000
    negative_max_chars = 10_000
    #: Whether the service takes a seed (and so can make several different images).
    takes_seed: ClassVar[bool] = True
    prompt_use: ClassVar[PromptUse] = "optional"
    takes_negative: ClassVar[bool] = True
    takes_style: ClassVar[bool] = False
    #: Request field -> (lowest, highest, default) of a number the service takes under the same name.
    numbers: ClassVar[Mapping[str, tuple[float, float, float]]] = {}
    #: The body field the source image goes in.
    image_field: ClassVar[str] = "image"
    input_limits: ClassVar[Mapping[str, ImageLimits]] = {"source_image": EDIT_IMAGE}
    #: A second stored image the service requires: (request field, body field, what it is), or None.
    second_image: ClassVar[tuple[str, str, str] | None] = None

    def validate(self, request: ImageRequest) -> list[FieldError]:
        errors = self._common_checks(request)
        if self.prompt_use == "required" and request.prompt is None:
            errors.append(FieldError("prompt", f"required by {request.operation}: what to draw"))
        if self.prompt_use == "none" and request.prompt is not None:
            errors.append(self.not_taken("prompt"))
        if not self.takes_negative and request.negative_prompt is not None:
            errors.append(self.not_taken("negative_prompt"))
        if not self.takes_seed:
            if request.seed is not None:
                errors.append(self.not_taken("seed"))
            if request.count != 1:
                errors.append(
                    self.refusal(
                        "count", "count 1 (it has no seed: every image would be the same)", str(request.count)
                    )
                )
        if request.style is not None:
            if not self.takes_style:
                errors.append(self.not_taken("style"))
            elif request.style not in STYLE_PRESETS:
                errors.append(
                    self.refusal("style", f"style presets {', '.join(STYLE_PRESETS)}", request.style)
                )
        for name in _NOT_TAKEN:
            if getattr(request, name) is not None:
                errors.append(self.not_taken(name))
        for name, (low, high, _) in self.numbers.items():
            value = getattr(request, name)
            if value is not None and not low <= value <= high:
                errors.append(self.refusal(name, f"{name} from {low:g} to {high:g}", f"{value:g}"))
        if self.second_image is not None:
            field, _, what = self.second_image
            if getattr(request, field) is None:
                errors.append(FieldError(field, f"required by {self.registry_id}: the key of {what}"))
        return errors

    def operation_parameters(self, request: ImageRequest) -> dict[str, Any]:
        """The operation's own parameters, defaults filled in (recorded in each image's lineage)."""
        found: dict[str, Any] = {}
        for name, (_, _, default) in self.numbers.items():
            value = getattr(request, name)
            found[name] = default if value is None else value
        return found

    def normalize(self, request: ImageRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "count": request.count,
            "file_name_prefix": request.file_name_prefix,
            "output_folder": request.output_folder,
            "operation": request.operation,
            "source_image": request.source_image,
            "operation_parameters": self.operation_parameters(request),
        }
        if request.style is not None:
            params["style"] = request.style
        if self.second_image is not None:
            field = self.second_image[0]
            params[field] = getattr(request, field)
        return params

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "upscale_mode": self.upscale_mode,
            "input_limits": {field: limits.describe() for field, limits in self.input_limits.items()},
        }

    def build_body(
        self, params: dict[str, Any], seed: int, inputs: Mapping[str, bytes] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {self.image_field: _b64(source_bytes(inputs, "source_image"))}
        if self.prompt_use != "none":
            # prompt is a required key of the upscales and edits ("Minimum 0" characters): "" when none.
            body["prompt"] = params.get("prompt") or ""
        if self.takes_negative and params.get("negative_prompt"):
            body["negative_prompt"] = params["negative_prompt"]
        if self.takes_style and params.get("style"):
            body["style_preset"] = params["style"]
        if self.takes_seed:
            body["seed"] = seed
        body.update(params.get("operation_parameters") or {})
        if self.second_image is not None:
            field, body_field, _ = self.second_image
            body[body_field] = _b64(source_bytes(inputs, field))
        body["output_format"] = "png"
        return body

    def parse_response(self, payload: dict[str, Any], seed: int) -> Outcome:
        outcome = parse_stability_answer(payload, seed)
        return (
            outcome if self.takes_seed else Outcome(outcome.image, None, outcome.reason_code, outcome.message)
        )


class FastUpscale(_ImageService):
    """Fast Upscale: "enhances image resolution by 4 times"; body ``image`` and ``output_format``."""

    registry_id = "stable-fast-upscale"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Stability AI Stable Image Fast Upscale"
    operations = frozenset({"upscale"})
    upscale_mode = "fast"
    takes_seed = False
    prompt_use = "none"
    takes_negative = False
    input_limits: ClassVar[Mapping[str, ImageLimits]] = {"source_image": FAST_UPSCALE_IMAGE}


class ConservativeUpscale(_ImageService):
    """Conservative Upscale: prompt, image, creativity "Range between 0.1 and 0.5. Default 0.35"."""

    registry_id = "stable-conservative-upscale"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Stability AI Stable Image Conservative Upscale"
    operations = frozenset({"upscale"})
    upscale_mode = "conservative"
    numbers: ClassVar[Mapping[str, tuple[float, float, float]]] = {"creativity": (0.1, 0.5, 0.35)}


class CreativeUpscale(_ImageService):
    """Creative Upscale: prompt, image, creativity "Range between 0.1 and 0.5. Default 0.3", style_preset."""

    registry_id = "stable-creative-upscale"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Stability AI Stable Image Creative Upscale"
    operations = frozenset({"upscale"})
    upscale_mode = "creative"
    takes_style = True
    numbers: ClassVar[Mapping[str, tuple[float, float, float]]] = {"creativity": (0.1, 0.5, 0.3)}
    input_limits: ClassVar[Mapping[str, ImageLimits]] = {"source_image": CREATIVE_UPSCALE_IMAGE}


class RemoveBackground(_ImageService):
    """Remove Background: body ``image`` and ``output_format``; the answer has an alpha channel."""

    registry_id = "stable-remove-background"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Stability AI Stable Image Remove Background"
    operations = frozenset({"remove-background"})
    takes_seed = False
    prompt_use = "none"
    takes_negative = False


class SearchReplace(_ImageService):
    """Search and Replace: prompt, search_prompt ("Short description of what to inpaint"), grow_mask
    "Range between 0 and 20. Default 5", style_preset. It also serves ``inpaint`` by ``mask_prompt``:
    the model finds what the words name and repaints it, which is what an inpaint by prompt asks."""

    registry_id = "stable-search-replace"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Stability AI Stable Image Search and Replace"
    operations = frozenset({"search-and-replace", "inpaint"})
    prompt_use = "required"
    takes_style = True
    numbers: ClassVar[Mapping[str, tuple[float, float, float]]] = {"grow_mask": (0, 20, 5)}

    def validate(self, request: ImageRequest) -> list[FieldError]:
        errors = super().validate(request)
        if request.operation == "inpaint" and request.mask_image is not None:
            errors.append(
                FieldError(
                    "mask_image", f"{self.registry_id} finds what mask_prompt names; send no mask_image"
                )
            )
        return errors

    def operation_parameters(self, request: ImageRequest) -> dict[str, Any]:
        return {
            **super().operation_parameters(request),
            "search_prompt": request.search_prompt or request.mask_prompt,
        }


class Inpaint(_ImageService):
    """Inpaint: prompt, image, mask ("black ... no inpainting, white ... full strength"), grow_mask
    "Range between 0 and 20. Default 5", style_preset. Here the mask is always a stored image
    (``mask_image``), checked to be black and white and of the source's size before anything runs."""

    registry_id = "stable-inpaint"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Stability AI Stable Image Inpaint"
    operations = frozenset({"inpaint"})
    prompt_use = "required"
    takes_style = True
    numbers: ClassVar[Mapping[str, tuple[float, float, float]]] = {"grow_mask": (0, 20, 5)}
    second_image = ("mask_image", "mask", "a stored mask")


class Outpaint(_ImageService):
    """Outpaint: image, left/right/up/down "Range 0 to 2000" ("At least one outpaint direction ... must
    be supplied with a non-zero value"), creativity "Range between 0.1 and 1.0. Default 0.5", prompt
    optional, style_preset. No negative_prompt."""

    registry_id = "stable-outpaint"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Stability AI Stable Image Outpaint"
    operations = frozenset({"outpaint"})
    takes_negative = False
    takes_style = True
    numbers: ClassVar[Mapping[str, tuple[float, float, float]]] = {"creativity": (0.1, 1.0, 0.5)}

    def operation_parameters(self, request: ImageRequest) -> dict[str, Any]:
        sides = {side: getattr(request, side) or 0 for side in ("left", "right", "up", "down")}
        return {**super().operation_parameters(request), **sides}


class StyleTransfer(_ImageService):
    """Style Transfer: init_image, style_image, composition_fidelity "Range between 0 and 1. Default
    0.9", style_strength "Range between 0 and 1. Default 1", change_strength "Range between 0.1 and 1.
    Default 0.9", prompt and negative_prompt optional."""

    registry_id = "stable-style-transfer"
    model_id = BEDROCK_MODEL_IDS[registry_id]
    name = "Stability AI Stable Image Style Transfer"
    operations = frozenset({"style-transfer"})
    image_field = "init_image"
    numbers: ClassVar[Mapping[str, tuple[float, float, float]]] = {
        "composition_fidelity": (0.0, 1.0, 0.9),
        "style_strength": (0.0, 1.0, 1.0),
        "change_strength": (0.1, 1.0, 0.9),
    }
    input_limits: ClassVar[Mapping[str, ImageLimits]] = {
        "source_image": EDIT_IMAGE,
        "style_image": EDIT_IMAGE,
    }
    second_image = ("style_image", "style_image", "a stored image")

    def build_body(
        self, params: dict[str, Any], seed: int, inputs: Mapping[str, bytes] | None = None
    ) -> dict[str, Any]:
        body = super().build_body(params, seed, inputs)
        if not params.get("prompt"):
            body.pop("prompt")  # optional here, and without a documented length limit
        return body


#: The image services, in registry order (the facts file's).
IMAGE_SERVICES: tuple[type[_ImageService], ...] = (
    ConservativeUpscale,
    CreativeUpscale,
    FastUpscale,
    RemoveBackground,
    SearchReplace,
    Inpaint,
    Outpaint,
    StyleTransfer,
)
