"""What every model adapter does: check a request against the model's limits, build the
InvokeModel body, and turn the model's answer (or error) into an image or a reason code."""

from __future__ import annotations

import base64
import binascii
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar

from image_pipeline.contract.errors import (
    FieldError,
    ImageGenError,
    ModelAccessDenied,
    ModelRejected,
    ModelResponseInvalid,
    ModelThrottled,
    ModelTimeout,
    ModelUnavailable,
)
from image_pipeline.contract.request import ImageRequest
from image_pipeline.models.facts import ModelFacts, model_facts, offered_in
from image_pipeline.models.image_limits import ImageLimits

#: Request fields that name a stored image (an S3 key of this deployment's images).
IMAGE_FIELDS = ("source_image", "mask_image", "style_image")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILTER_PHRASE = "blocked by our content filters"


@dataclass(frozen=True)
class Outcome:
    """The result of one model call: an image, or a content-filter reason (never retried)."""

    image: bytes | None = None
    seed: int | None = None
    reason_code: str | None = None
    message: str | None = None


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk; raises ModelResponseInvalid if not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ModelResponseInvalid("the model returned data that is not a PNG image")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def decode_image(b64: Any) -> bytes:
    """Decode one base64 image of a model response and check that it is a PNG."""
    if not isinstance(b64, str) or not b64:
        raise ModelResponseInvalid("the model returned an empty image")
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ModelResponseInvalid("the model returned an image that is not valid base64") from exc
    png_size(data)
    return data


def source_bytes(inputs: Mapping[str, bytes] | None, field: str) -> bytes:
    """The bytes of the stored image ``field`` names, as the branch read them."""
    if not inputs or field not in inputs:
        raise ValueError(f"the branch did not read {field}: build_body needs the stored image's bytes")
    return inputs[field]


def error_for_client_error(code: str, message: str) -> ImageGenError | Outcome:
    """Classify a Bedrock Runtime error code: a filter outcome, or a named (maybe transient) error."""
    if code == "ValidationException" and _FILTER_PHRASE in message:
        return Outcome(reason_code="CONTENT_FILTERED_INPUT", message=message)
    if code in {"ThrottlingException", "ServiceQuotaExceededException", "TooManyRequestsException"}:
        return ModelThrottled(f"{code}: {message}")
    if code in {"ModelTimeoutException", "RequestTimeout", "ReadTimeout"}:
        return ModelTimeout(f"{code}: {message}")
    if code in {"AccessDeniedException", "ResourceNotFoundException", "UnrecognizedClientException"}:
        return ModelAccessDenied(f"{code}: {message}")
    if code == "ValidationException":
        return ModelRejected(f"{code}: {message}")
    return ModelUnavailable(f"{code}: {message}")


class ImageModelAdapter(ABC):
    """One Bedrock image model."""

    registry_id: ClassVar[str]
    model_id: ClassVar[str]
    name: ClassVar[str]
    provider: ClassVar[str]
    #: The seeds the model takes: each adapter states its documented range and its source.
    min_seed: ClassVar[int] = 0
    max_seed: ClassVar[int]
    #: Why ``min_seed`` is not 0, when it is not (said with every seed refusal).
    seed_note: ClassVar[str] = ""
    prompt_max_chars: ClassVar[int]
    negative_max_chars: ClassVar[int]

    #: Operations on a stored image this model does (``ImageRequest.operation``; ``core/refine.py``).
    operations: ClassVar[frozenset[str]] = frozenset()
    #: Whether it draws from a prompt alone (a request without ``operation``).
    text_to_image: ClassVar[bool] = True
    #: The upscale mode it serves (the upscale services only).
    upscale_mode: ClassVar[str | None] = None
    #: The limits of each stored image it reads, by request field (``source_image``, ``style_image``),
    #: checked before anything runs (``core/refine.py``).
    input_limits: ClassVar[Mapping[str, ImageLimits]] = {}

    @abstractmethod
    def validate(self, request: ImageRequest) -> list[FieldError]:
        """Problems that stop this model from serving the request, one per field."""

    @abstractmethod
    def normalize(self, request: ImageRequest) -> dict[str, Any]:
        """The request with this model's defaults filled in (what each branch receives)."""

    @abstractmethod
    def build_body(
        self, params: dict[str, Any], seed: int, inputs: Mapping[str, bytes] | None = None
    ) -> dict[str, Any]:
        """The InvokeModel JSON body for one image with ``seed``; ``inputs`` holds the bytes of each
        stored image the request names (``input_keys``), read by the branch."""

    def input_keys(self, params: Mapping[str, Any]) -> dict[str, str]:
        """The stored images a branch reads for this request: request field -> S3 key."""
        return {field: str(params[field]) for field in IMAGE_FIELDS if params.get(field)}

    def lineage(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """Where an image of this request comes from (None: from its prompt alone): the operation,
        the stored images it read (and the manifest of the source's job, which holds the source's own
        prompt and lineage) and the operation's parameters, as the manifest records them."""
        operation = params.get("operation")
        if not operation:
            return None
        source = str(params["source_image"])
        return {
            "operation": operation,
            "source_image": source,
            "source_manifest": source.rsplit("/", 1)[0] + "/manifest.json",
            "style_image": params.get("style_image"),
            "mask_image": params.get("mask_image"),
            "parameters": {k: v for k, v in params.get("operation_parameters", {}).items() if v is not None},
        }

    @abstractmethod
    def parse_response(self, payload: dict[str, Any], seed: int) -> Outcome:
        """One image (or a filter reason) from the model's JSON answer."""

    def refusal(self, field: str, takes: str, given: str) -> FieldError:
        """A value this model cannot honour exactly, refused rather than changed: ``field``, what the
        model takes and what it was given (``<model> takes <takes>, not <given>``)."""
        return FieldError(field, f"{self.registry_id} takes {takes}, not {given}")

    def not_taken(self, field: str) -> FieldError:
        """An option this model does not have (sending it anyway would drop it silently)."""
        return FieldError(field, f"{self.registry_id} takes no {field}; leave it out")

    def _common_checks(self, request: ImageRequest) -> list[FieldError]:
        errors = []
        if request.prompt is not None and len(request.prompt) > self.prompt_max_chars:
            errors.append(
                self.refusal(
                    "prompt",
                    f"prompts of at most {self.prompt_max_chars} characters",
                    str(len(request.prompt)),
                )
            )
        if request.negative_prompt and len(request.negative_prompt) > self.negative_max_chars:
            errors.append(
                self.refusal(
                    "negative_prompt",
                    f"negative prompts of at most {self.negative_max_chars} characters",
                    str(len(request.negative_prompt)),
                )
            )
        errors.extend(self._seed_errors(request))
        return errors

    def _seed_errors(self, request: ImageRequest) -> list[FieldError]:
        """The first seed must be in the model's range, and so must the last (image i gets seed+i):
        a seed is never wrapped or reduced to fit."""
        seed, count = request.seed, request.count
        if seed is None:
            return []
        takes = f"seeds from {self.min_seed} to {self.max_seed}{self.seed_note}"
        if not self.min_seed <= seed <= self.max_seed:
            return [self.refusal("seed", takes, str(seed))]
        if seed + count - 1 > self.max_seed:
            return [
                self.refusal(
                    "seed",
                    f"{takes}; image i gets seed+i, so with count {count} the first seed is at most "
                    f"{self.max_seed - count + 1}",
                    str(seed),
                )
            ]
        return []

    @property
    def facts(self) -> ModelFacts:
        """What AWS says about this model: lifecycle, Regions, inference profiles (``model_facts.json``)."""
        return model_facts(self.model_id)

    @property
    def seed_reproducible(self) -> bool:
        """Whether the model's documentation has a seed reproduce its image (same body, same image), so
        the prompt cache (``core/image_index.py``) may serve an earlier one: the ``seed`` fact of
        ``model_facts.json`` (its wording, page and status); a model it says nothing of, never."""
        seed = self.facts.seed
        return seed is not None and seed.reproducible

    def invoke_id(self, region: str) -> str:
        """The InvokeModel ``modelId`` from ``region``: the model id, or the inference profile id when the
        facts say the model is reached through one there (the model id when the Region is unknown)."""
        return (offered_in(self.model_id, region) if region else None) or self.model_id

    def describe(self) -> dict[str, Any]:
        """What clients may send to this model (served by ``GET /models``), and its recorded lifecycle
        and Regions (``GET /models`` adds the status on the day)."""
        facts = self.facts
        return {
            "id": self.registry_id,
            "model_id": self.model_id,
            "name": self.name,
            "provider": self.provider,
            "legacy_date": _iso(facts.lifecycle.legacy_date),
            "end_of_life": _iso(facts.lifecycle.eol_date),
            "lifecycle_source": facts.lifecycle.source,
            "regions": list(facts.regions_offering()),
            "marketplace": facts.marketplace,
            # What it does: draw from a prompt (text_to_image) and/or operations on a stored image.
            "text_to_image": self.text_to_image,
            "operations": sorted(self.operations),
            "min_seed": self.min_seed,
            "max_seed": self.max_seed,
            "prompt_max_chars": self.prompt_max_chars,
            "negative_prompt_max_chars": self.negative_max_chars,
        }


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None
