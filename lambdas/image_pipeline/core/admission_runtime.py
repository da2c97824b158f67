"""Admission control as the functions run it: the semaphore over this deployment's tables, how a waiting
branch is woken (``SendTaskSuccess``) and how a cancelled job is recognised. Shared by the Admission
function (``AcquireSlot``, ``ReleaseSlot``) and GenerateImage (its slot handed on after the model call);
the synchronous routes read the length of a model's queue (:func:`read_queue_estimate`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError

from image_pipeline.contract.errors import FieldError, StorageError
from image_pipeline.core import clients
from image_pipeline.core.admission import (
    DEAD_TOKEN_CODES,
    QueueEstimate,
    Semaphore,
    estimate_queue,
    quota_of,
)
from image_pipeline.core.admission import DynamoSlotStore as _Store
from image_pipeline.core.cancellation import is_cancelled
from image_pipeline.core.jobs import DEFAULT_COUNT
from image_pipeline.core.settings import Settings
from image_pipeline.models.registry import list_adapters, resolve_model


def send_task_success(sfn: Any, token: str, output: Mapping[str, Any]) -> bool:
    """Wake the branch waiting on ``token``: True, or False when its task no longer waits (its
    execution stopped, its wait timed out: ``DEAD_TOKEN_CODES``); other errors raise."""
    try:
        sfn.send_task_success(taskToken=token, output=json.dumps(dict(output)))
    except Exception as exc:
        code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
        if code in DEAD_TOKEN_CODES:
            return False
        raise
    return True


@dataclass(frozen=True)
class AdmissionRuntime:
    """The semaphore of this deployment and the two callbacks its hand-offs need."""

    semaphore: Semaphore
    settings: Settings

    def limit(self, model: str) -> int:
        """The model's calls in flight (configured, or its documented quota's conservative default)."""
        return quota_of(model, self.settings.model_concurrency)

    def notify(self, token: str, output: Mapping[str, Any]) -> bool:
        return send_task_success(clients.admission_stepfunctions(), token, output)

    def cancelled(self, execution: str) -> bool:
        """Whether the job was cancelled; a marker that cannot be read is no cancellation (the branch
        keeps its place and the job's GenerateImage looks again before the call)."""
        try:
            return is_cancelled(clients.admission_s3(), self.settings.images_bucket, execution)
        except (StorageError, BotoCoreError):  # not found in time: looked for again by GenerateImage
            return False

    def models(self) -> list[str]:
        """The models whose queues the keeper looks after: those this deployment allows (all when it
        names none)."""
        return list(self.settings.allowed_models) or [adapter.registry_id for adapter in list_adapters()]

    def waiting(self, model: str) -> int | None:
        """Branches waiting in the model's queue (its counter), or None when it cannot be read."""
        try:
            return self.semaphore.store.waiting(model)
        except Exception:  # botocore's errors: a metric is not worth failing the take
            return None


def admission_runtime(settings: Settings) -> AdmissionRuntime | None:
    """Admission control under ``settings``, or None when it is off (no slots table)."""
    if not settings.admission_table:
        return None
    store = _Store(clients.admission_dynamodb(), settings.admission_table, settings.admission_waiters_table)
    return AdmissionRuntime(Semaphore(store, settings.admission_lease_seconds), settings)


def read_queue_estimate(
    settings: Settings,
    dynamodb: Callable[[], Any],
    request: Mapping[str, Any],
    *,
    on_error: Callable[[Exception], None] | None = None,
) -> QueueEstimate | None:
    """How long ``request`` (a checked execution input) would wait behind its model's queue: one
    ``GetItem`` of the queue's counter (``DynamoSlotStore.waiting``) with the client ``dynamodb()``
    makes (only when admission control is on), and the model's calls in flight.

    None when admission control is off (no tables: every branch calls its model at once, nobody
    queues) or when anything fails (the read, a model not found): a failed look never fails the
    request, which then waits as it would have without it (``on_error`` is told why)."""
    if not settings.admission_table or not settings.admission_waiters_table:
        return None
    try:
        adapter = resolve_model(
            str(request.get("model") or settings.default_model), allowed=settings.allowed_models
        )
        if isinstance(adapter, FieldError):
            return None
        model = adapter.registry_id
        store = _Store(dynamodb(), settings.admission_table, settings.admission_waiters_table)
        ahead = store.waiting(model)
        images = int(request.get("count") or DEFAULT_COUNT)
        return estimate_queue(model, ahead, images, quota_of(model, settings.model_concurrency))
    except Exception as exc:  # botocore's errors, or any client failure: the route waits as before
        if on_error is not None:
            on_error(exc)
        return None
