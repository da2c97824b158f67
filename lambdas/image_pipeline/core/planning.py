"""Check a request once, plan it once.

* :func:`check_request` parses a raw request (:class:`~image_pipeline.contract.request.ImageRequest`) and
  checks it against the deployment (``MAX_IMAGES_PER_REQUEST``, the allowed models), the chosen model's
  lifecycle and Regions on the day (``image_pipeline.models.facts``: past its end of life or not offered
  in the deployment's Region is refused, legacy is a warning) and its own limits (its adapter in
  ``image_pipeline.models``). Every problem is one :class:`~image_pipeline.contract.errors.InvalidRequest`
  that names each field to change. The API's pre-check (``image_pipeline.core.jobs.validate_submission``)
  calls only this.
* :func:`plan` turns a checked request into the plan the workflow fans out over: the model's
  normalized parameters, one distinct seed and S3 key per image. The workflow's first step
  (``handlers/validate_request.py``) calls both.
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from image_pipeline.contract.errors import FieldError, InvalidRequest
from image_pipeline.contract.request import ImageRequest, parse_request
from image_pipeline.core.keys import image_key, manifest_key, request_prefix
from image_pipeline.core.settings import Settings
from image_pipeline.core.tenancy import Caller
from image_pipeline.models.base import ImageModelAdapter
from image_pipeline.models.facts import standing, today_utc
from image_pipeline.models.registry import resolve_model


class CheckedRequest(NamedTuple):
    """A request that this deployment and its model can serve: the parsed request, the adapter of
    its model, the settings it was checked against (which the plan uses), and what the caller should
    know (a legacy model: until when, and what to use instead)."""

    request: ImageRequest
    adapter: ImageModelAdapter
    settings: Settings
    warnings: tuple[str, ...] = ()


def check_request(raw: Any, settings: Settings, *, today: date | None = None) -> CheckedRequest:
    """Parse ``raw`` and check it for the deployment and the model it names (or the default model).

    ``today`` (default: today in UTC) is the day the model's lifecycle is judged on. Raises
    :class:`InvalidRequest` naming every field to change.
    """
    request = parse_request(raw)
    errors: list[FieldError] = []
    if request.count > settings.max_images_per_request:
        errors.append(
            FieldError("count", f"at most {settings.max_images_per_request} images per request here")
        )
    adapter = resolve_model(request.model or settings.default_model, allowed=settings.allowed_models)
    if isinstance(adapter, FieldError):
        raise InvalidRequest([*errors, adapter])
    judged = standing(
        adapter.model_id,
        day=today or today_utc(),
        region=settings.region or None,
        among=settings.allowed_models or None,
    )
    if judged.problem:  # reported with the request's other problems, all at once
        errors.append(FieldError("model", judged.problem))
    errors.extend(adapter.validate(request))
    if errors:
        raise InvalidRequest(errors)
    return CheckedRequest(request, adapter, settings, (judged.warning,) if judged.warning else ())


def distinct_seeds(count: int, max_seed: int, first: int | None) -> list[int]:
    """One distinct seed per image: ``first + i`` (wrapping at the model's maximum) or random ones."""
    if first is not None:
        return [(first + i) % (max_seed + 1) for i in range(count)]
    seeds: list[int] = []
    while len(seeds) < count:
        candidate = secrets.randbelow(max_seed + 1)
        if candidate not in seeds:
            seeds.append(candidate)
    return seeds


def plan(
    checked: CheckedRequest, request_id: str, now: datetime | None = None, *, caller: Caller
) -> dict[str, Any]:
    """The plan of a checked request of ``caller``: one branch per image.

    Returns the normalized request, the resolved model, the S3 prefix (under the caller's namespace),
    and per image its index, seed and S3 key (keys are unique per caller and request id).
    """
    request, adapter, settings = checked.request, checked.adapter, checked.settings
    normalized = adapter.normalize(request)
    seeds = distinct_seeds(request.count, adapter.max_seed, request.seed)
    prefix = request_prefix(request.output_folder, request_id, namespace=caller.namespace)
    images = [
        {"index": i, "seed": seed, "key": image_key(prefix, request.file_name_prefix, i, seed)}
        for i, seed in enumerate(seeds)
    ]
    return {
        "request_id": request_id,
        "caller_namespace": caller.namespace,
        "model": adapter.registry_id,
        "request": normalized,
        "bucket": settings.images_bucket,
        "prefix": prefix,
        "manifest_key": manifest_key(prefix),
        "max_concurrency": settings.map_max_concurrency,
        "received_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "images": images,
        "warnings": list(checked.warnings),
    }
