"""Check a request once, plan it once.

* :func:`check_request` parses a raw request (:class:`~image_pipeline.contract.request.ImageRequest`) and
  checks it against the deployment (``MAX_IMAGES_PER_REQUEST``, the allowed models, where its webhook
  may point: ``core/webhooks.py``), the chosen model's
  lifecycle and Regions on the day (``image_pipeline.models.facts``: past its end of life or not offered
  in the deployment's Region is refused, legacy is a warning) and its own limits (its adapter in
  ``image_pipeline.models``), and an operation on a stored image with its own fields and the model that
  does it (``core/refine.py``; the stored images themselves are checked by
  :func:`~image_pipeline.core.refine.check_stored_images`, which reads S3). Every problem is one :class:`~image_pipeline.contract.errors.InvalidRequest`
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
from image_pipeline.core.execution_input import RetryOf
from image_pipeline.core.keys import image_key, manifest_key, request_prefix
from image_pipeline.core.refine import model_errors, operation_errors, operation_model
from image_pipeline.core.settings import Settings
from image_pipeline.core.tenancy import Caller
from image_pipeline.core.webhooks import webhook_problems
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
    errors.extend(operation_errors(request))
    name = request.model or (
        operation_model(request, settings.allowed_models) if request.operation else settings.default_model
    )
    adapter = name if isinstance(name, FieldError) else resolve_model(name, allowed=settings.allowed_models)
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
    # A model that does not do what is asked: say which do, rather than list its other limits.
    errors.extend(model_errors(adapter, request) or adapter.validate(request))
    errors.extend(webhook_problems(request.webhook, request.webhook_events))
    if errors:
        raise InvalidRequest(errors)
    return CheckedRequest(request, adapter, settings, (judged.warning,) if judged.warning else ())


def distinct_seeds(count: int, max_seed: int, first: int | None, *, min_seed: int = 0) -> list[int]:
    """One distinct seed per image: ``first + i``, or random ones from ``min_seed`` to ``max_seed``.

    A seed is never wrapped or reduced: the adapter refuses a first seed whose last image would pass
    the model's maximum (``ValueError`` here, for a request that was not checked).
    """
    if first is not None:
        if not (min_seed <= first and first + count - 1 <= max_seed):
            raise ValueError(f"seeds {first} to {first + count - 1} are not all in {min_seed}..{max_seed}")
        return [first + i for i in range(count)]
    seeds: list[int] = []
    while len(seeds) < count:
        candidate = min_seed + secrets.randbelow(max_seed - min_seed + 1)
        if candidate not in seeds:
            seeds.append(candidate)
    return seeds


def retried_images(checked: CheckedRequest, retry: RetryOf) -> list[tuple[int, int]]:
    """The ``(index, seed)`` pairs a retry makes again, checked against the request (each index one
    of its images, once; each seed one its model takes). Raises :class:`InvalidRequest` (``retry``)."""
    count, max_seed = checked.request.count, checked.adapter.max_seed
    indexes = [index for index, _ in retry.images]
    problems = []
    if not retry.images:
        problems.append("names no image")
    if len(set(indexes)) != len(indexes):
        problems.append("names an image twice")
    if any(not 0 <= index < count for index in indexes):
        problems.append(f"image indexes are 0 to {count - 1}")
    if any(not 0 <= seed <= max_seed for _, seed in retry.images):
        problems.append(f"seeds are 0 to {max_seed}")
    if problems:
        raise InvalidRequest([FieldError("retry", "; ".join(problems))])
    return sorted(retry.images)


def plan(
    checked: CheckedRequest,
    request_id: str,
    now: datetime | None = None,
    *,
    caller: Caller,
    retry: RetryOf | None = None,
    execution_name: str | None = None,
) -> dict[str, Any]:
    """The plan of a checked request of ``caller``: one branch per image.

    Returns the normalized request, the resolved model, the S3 prefix (under the caller's namespace),
    and per image its index, seed and S3 key (keys are unique per caller and request id). A ``retry``
    plans only the images it names, each with its own index and seed (so its file name is the one it
    had), in this request's folder, and names the job it retries (``retry_of``). ``execution_name``
    lets the manifest step look for the job's cancellation (``core/cancellation.py``).
    """
    request, adapter, settings = checked.request, checked.adapter, checked.settings
    normalized = adapter.normalize(request)
    if retry is not None:
        pairs = retried_images(checked, retry)
    else:
        pairs = list(
            enumerate(
                distinct_seeds(request.count, adapter.max_seed, request.seed, min_seed=adapter.min_seed)
            )
        )
    prefix = request_prefix(request.output_folder, request_id, namespace=caller.namespace)
    images = [
        {"index": i, "seed": seed, "key": image_key(prefix, request.file_name_prefix, i, seed)}
        for i, seed in pairs
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
        "execution_name": execution_name,
        "retry_of": retry.job_id if retry is not None else None,
        # The prompt cache (core/image_index.py) may serve this request's images: its result is fully
        # determined (an explicit seed, a model whose seed reproduces its image) and it did not opt out.
        # An operation on a stored image is never served from it (its body holds the image's bytes).
        "cache": request.seed is not None
        and request.cache
        and adapter.seed_reproducible
        and request.operation is None,
        # Each branch queues its image's webhook as the image is stored (core/webhooks.py).
        "image_webhook": request.webhook is not None and "image" in (request.webhook_events or ()),
    }
