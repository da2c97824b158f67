"""Refining a stored image: which fields go with which operation, which model does it, and the checks
of the stored images a request names (``source_image``, ``mask_image``, ``style_image``).

* :func:`operation_errors` (pure): an operation needs its source and its own fields (search-and-replace
  a ``search_prompt``, inpaint a ``mask_image`` or a ``mask_prompt``, outpaint a side, style-transfer a
  ``style_image``), and an operation's field sent with another operation is refused, not dropped.
* :func:`operation_model`: the registry id that does an operation when the request names no model.
* :func:`check_stored_images` (reads S3): each key is the caller's (another caller's key is "not found",
  word for word what a missing key gets), the image exists, and its size is one the model takes; a mask
  is black and white and of the source's size. Every entry point runs it before anything starts: the
  API's pre-check (``core/jobs.validate_submission``) and the workflow's first step, for the console,
  events and batches. Nothing is read again there: the branch reads each image once, by key
  (:func:`read_stored_images`), and the keys, never the bytes, pass between states.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError

from image_pipeline.contract.errors import FieldError, InvalidRequest, StorageError
from image_pipeline.contract.request import ImageRequest
from image_pipeline.core.keys import namespace_prefix
from image_pipeline.core.png_pixels import NotAPng, is_black_and_white, png_dimensions
from image_pipeline.core.tenancy import Caller
from image_pipeline.models.base import IMAGE_FIELDS, ImageModelAdapter
from image_pipeline.models.registry import list_adapters

#: Each operation's own fields (sent with another operation, a field is refused).
OPERATION_FIELDS: dict[str, frozenset[str]] = {
    "upscale_mode": frozenset({"upscale"}),
    "strength": frozenset({"variation"}),
    "search_prompt": frozenset({"search-and-replace"}),
    "mask_image": frozenset({"inpaint"}),
    "mask_prompt": frozenset({"inpaint"}),
    "left": frozenset({"outpaint"}),
    "right": frozenset({"outpaint"}),
    "up": frozenset({"outpaint"}),
    "down": frozenset({"outpaint"}),
    "style_image": frozenset({"style-transfer"}),
    "creativity": frozenset({"upscale", "outpaint"}),
    "grow_mask": frozenset({"inpaint", "search-and-replace"}),
    "style_strength": frozenset({"style-transfer"}),
    "composition_fidelity": frozenset({"style-transfer"}),
    "change_strength": frozenset({"style-transfer"}),
}
#: What a key another caller stored, or no one did, answers: the same words for both.
NOT_FOUND = "not found: no image of yours has this key"
#: S3's answers for a key that is not there. GetObject without s3:ListBucket answers a missing key with
#: 403 AccessDenied ("If you don't have the s3:ListBucket permission, Amazon S3 returns an HTTP status
#: code 403", https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html, read 2026-11-30), and
#: the roles that read images have GetObject on ``*.png`` only.
_MISSING = frozenset({"404", "NoSuchKey", "NotFound", "403", "AccessDenied"})
#: Bytes read of a source or style image: the PNG signature and IHDR (its size).
_HEADER_BYTES = 33


def _operations(field: str) -> str:
    return " or ".join(sorted(OPERATION_FIELDS[field]))


def operation_errors(request: ImageRequest) -> list[FieldError]:
    """Problems of the request's fields taken together (no I/O, no model)."""
    op = request.operation
    errors = [
        FieldError(field, f"goes with operation {_operations(field)}; leave it out")
        for field in OPERATION_FIELDS
        if getattr(request, field) is not None and op not in OPERATION_FIELDS[field]
    ]
    if op is None:  # (a request with neither a prompt nor a source_image is refused by parse_request)
        if request.source_image is not None:
            errors.append(FieldError("operation", "required with source_image: what to do with the image"))
        return errors
    if request.source_image is None:
        errors.append(FieldError("source_image", f"required by operation {op}: the key of a stored image"))
    if op == "search-and-replace" and request.search_prompt is None:
        errors.append(FieldError("search_prompt", "required by search-and-replace: what to replace"))
    if op == "inpaint" and (request.mask_image is None) == (request.mask_prompt is None):
        errors.append(
            FieldError("mask_image", "inpaint takes a mask_image or a mask_prompt: send one of them")
        )
    if op == "outpaint" and not any(getattr(request, side) for side in ("left", "right", "up", "down")):
        errors.append(
            FieldError("left", "outpaint needs at least one of left, right, up, down above 0 (pixels to add)")
        )
    if op == "style-transfer" and request.style_image is None:
        errors.append(FieldError("style_image", "required by style-transfer: the key of the style's image"))
    return errors


def does(adapter: ImageModelAdapter, request: ImageRequest) -> bool:
    """Whether the model does what the request asks (text to image, or its operation and mode)."""
    if request.operation is None:
        return adapter.text_to_image
    if request.operation not in adapter.operations:
        return False
    return request.upscale_mode is None or adapter.upscale_mode in (None, request.upscale_mode)


def operation_model(request: ImageRequest, allowed: tuple[str, ...] = ()) -> str | FieldError:
    """The registry id that does the request's operation, first in registry order among the allowed
    ones: an upscale by its mode (fast by default), an inpaint by mask image or by mask prompt."""
    wanted = request
    if request.operation == "upscale" and request.upscale_mode is None:
        wanted = request.model_copy(update={"upscale_mode": "fast"})
    for adapter in list_adapters():
        if allowed and adapter.registry_id not in allowed:
            continue
        if not does(adapter, wanted):
            continue
        if (
            request.operation == "inpaint"
            and request.mask_prompt is not None
            and "search-and-replace" not in adapter.operations
        ):
            continue  # an inpaint by prompt: the model finds what the words name
        if (
            request.operation == "inpaint"
            and request.mask_image is not None
            and "search-and-replace" in adapter.operations
        ):
            continue  # an inpaint by mask: the model that takes a mask
        return adapter.registry_id
    return FieldError("operation", f"no model enabled in this deployment does {request.operation}")


def model_errors(adapter: ImageModelAdapter, request: ImageRequest) -> list[FieldError]:
    """The named model does not do what the request asks: which models do."""
    if does(adapter, request):
        return []
    doing = [a.registry_id for a in list_adapters() if does(a, request)]
    if request.operation is None:
        return [
            FieldError(
                "model",
                f"{adapter.registry_id} works on a stored image: send source_image and operation "
                f"({', '.join(sorted(adapter.operations))}), or name a text-to-image model",
            )
        ]
    what = request.operation + (f" ({request.upscale_mode})" if request.upscale_mode else "")
    return [
        FieldError("model", f"{adapter.registry_id} does not do {what}; models that do: {', '.join(doing)}")
    ]


# -- the stored images ----------------------------------------------------------------------------


def _read(s3: Any, bucket: str, key: str, *, whole: bool) -> bytes | None:
    """The object's bytes (its first bytes unless ``whole``); None when it is not there."""
    extra = {} if whole else {"Range": f"bytes=0-{_HEADER_BYTES - 1}"}
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read())
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _MISSING:
            return None
        raise StorageError(f"could not read s3://{bucket}/{key}: {exc}") from None


def check_stored_images(
    request: ImageRequest, adapter: ImageModelAdapter, *, caller: Caller, s3: Any, bucket: str
) -> None:
    """Check each stored image the request names for ``caller`` and the model; raise
    :class:`InvalidRequest` naming each field (and, for a key that is not the caller's or not there,
    :data:`NOT_FOUND`, the same for both)."""
    errors: list[FieldError] = []
    sizes: dict[str, tuple[int, int]] = {}
    mine = namespace_prefix(caller.namespace)
    masks: dict[str, bytes] = {}
    for field in IMAGE_FIELDS:
        key = getattr(request, field)
        if key is None:
            continue
        data = _read(s3, bucket, key, whole=field == "mask_image") if key.startswith(mine) else None
        if data is None:
            errors.append(FieldError(field, NOT_FOUND))
            continue
        size = png_dimensions(data)
        if size is None:
            errors.append(FieldError(field, "is not a PNG image"))
            continue
        sizes[field] = size
        if field == "mask_image":
            masks[field] = data
        limits = adapter.input_limits.get(field)
        problems = limits.problems(*size) if limits else []
        if limits and problems:
            width, height = size
            errors.append(
                FieldError(
                    field,
                    f"{adapter.registry_id} takes {limits.describe()}, not {width}x{height} "
                    f"({', '.join(problems)}; {limits.source})",
                )
            )
    if "mask_image" in masks and not errors:
        # Only now: the mask's pixels are decoded when it is the size of a source that passed its
        # limits, which bounds the check's time (core/time_budget.mask_check_seconds).
        errors.extend(_mask_errors(masks["mask_image"], sizes))
    if errors:
        raise InvalidRequest(errors)


def _mask_errors(mask: bytes, sizes: Mapping[str, tuple[int, int]]) -> list[FieldError]:
    source = sizes.get("source_image")
    if source is None:
        return [FieldError("mask_image", "goes with a source_image of its size: send source_image")]
    if sizes["mask_image"] != source:
        (mw, mh), (sw, sh) = sizes["mask_image"], source
        return [FieldError("mask_image", f"must be the size of source_image ({sw}x{sh}), not {mw}x{mh}")]
    try:
        plain = is_black_and_white(mask)
    except NotAPng as exc:
        return [FieldError("mask_image", f"must be a black-and-white PNG, not {exc}")]
    if not plain:
        return [
            FieldError(
                "mask_image", "must be black and white (white: repaint, black: keep), not grey or colour"
            )
        ]
    return []


def is_not_found(error: InvalidRequest) -> bool:
    """Whether a refusal names a stored image that is not the caller's or not there."""
    return any(e.message == NOT_FOUND for e in error.errors)


def read_stored_images(s3: Any, bucket: str, keys: Mapping[str, str]) -> dict[str, bytes]:
    """A branch reads each stored image its request names, once: field -> bytes. One gone since the
    request was checked (deleted, expired) is a :class:`StorageError` of this image."""
    found = {}
    for field, key in keys.items():
        data = _read(s3, bucket, key, whole=True)
        if data is None:
            raise StorageError(f"{field} s3://{bucket}/{key} is no longer there")
        found[field] = data
    return found
