"""Metrics and traces of the workflow's handlers (Powertools), and what each metric counts.

Metrics go out as CloudWatch Embedded Metric Format (EMF) lines in the function's log, in namespace
``imagegen``, each with two dimension sets (the names are :mod:`image_pipeline.core.metric_names`): ``[service, model]`` (per model) and ``[service]`` (all
models, what the alarms watch):

* ``ImagesGenerated`` / ``ImagesFiltered`` / ``ImagesFailed`` (Count) — per request, from its manifest,
  so a retried branch is counted once; ``ImagesThrottled`` counts the failed ones whose reason is
  ``THROTTLED`` (Bedrock quota exhausted after every retry);
* ``ModelLatency`` (Milliseconds) — one value per InvokeModel answer (generated or filtered).

Handlers publish with :func:`log_metrics`, Powertools' ``metrics.log_metrics`` whenever metrics are
enabled. Offline, and wherever ``POWERTOOLS_METRICS_DISABLED`` is true (or ``POWERTOOLS_DEV`` without
it), nothing is recorded or flushed: Powertools 3.37 neither prints nor clears a disabled metric set,
so recorded values would pile up and be printed once 100 of them are there, and flushing an empty
set warns on every call. Traces go to X-Ray when the function has active tracing;
``POWERTOOLS_TRACE_DISABLED=true`` (the offline engine's setting) turns them off. Handlers do not put
responses in traces (``capture_response=False``): a manifest holds the prompt.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from image_pipeline.core.admission import HandOffReport
from image_pipeline.core.metric_names import (
    ADMISSION_NO_SLOT,
    ADMISSION_SLOTS_IN_USE,
    ADMISSION_WAIT_SECONDS,
    ADMISSION_WAITING,
    IMAGES_FAILED,
    IMAGES_FILTERED,
    IMAGES_GENERATED,
    IMAGES_THROTTLED,
    MODEL_DIMENSION,
    MODEL_LATENCY,
    NAMESPACE,
    SERVICE,
)

metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)

Handler = TypeVar("Handler", bound=Callable[..., Any])


def log_metrics(handler: Handler) -> Handler:
    """``@metrics.log_metrics`` (publish the metrics at the end of each call, even a failed one) where
    metrics are enabled; a plain call where they are disabled (checked on every call)."""
    published = metrics.log_metrics(handler)

    @functools.wraps(handler)
    def call(event: Any, context: Any) -> Any:
        if is_metrics_disabled():
            return handler(event, context)
        return published(event, context)

    return cast(Handler, call)


def _record(values: Iterable[tuple[str, MetricUnit, float]], model: str) -> None:
    """Add metrics (name, unit, value) for ``model``, unless metrics are disabled."""
    if is_metrics_disabled():
        return
    metrics.add_dimension(name=MODEL_DIMENSION, value=model)
    metrics.add_dimensions(service=SERVICE)
    for name, unit, value in values:
        metrics.add_metric(name=name, unit=unit, value=value)


def record_image(record: Mapping[str, Any], model: str) -> None:
    """The model latency of one Map branch's answer (its record from ``generate_image``)."""
    latency = record.get("model_latency_ms")
    if latency is not None:
        _record([(MODEL_LATENCY, MetricUnit.Milliseconds, float(latency))], model)


def outcomes_of_manifest(manifest: Mapping[str, Any]) -> Counter[str]:
    """Images per metric of a request's manifest (an image its job's cancellation kept from being
    made, reason ``CANCELLED``, is in none: it did not fail)."""
    counts: Counter[str] = Counter()
    for image in manifest.get("images", []):
        status = image.get("status")
        if image.get("reason_code") == "CANCELLED":
            continue
        if status == "SUCCEEDED":
            counts[IMAGES_GENERATED] += 1
        elif status == "FILTERED":
            counts[IMAGES_FILTERED] += 1
        else:
            counts[IMAGES_FAILED] += 1
            if image.get("reason_code") == "THROTTLED":
                counts[IMAGES_THROTTLED] += 1
    return counts


def outcomes_of_failed_request(state: Mapping[str, Any]) -> Counter[str]:
    """Images per metric of a request in which no image was generated, from the Map's records (the
    manifest step raised instead of returning its manifest): filtered images were returned as
    FILTERED records, every other one failed."""
    results = {r.get("index"): r for r in state.get("results") or [] if isinstance(r, dict)}
    counts: Counter[str] = Counter()
    for planned in state.get("images", []):
        result = results.get(planned.get("index")) or {}
        if result.get("status") == "FILTERED":
            counts[IMAGES_FILTERED] += 1
        else:
            counts[IMAGES_FAILED] += 1
            if result.get("error") == "ModelThrottled":
                counts[IMAGES_THROTTLED] += 1
    return counts


def record_outcomes(counts: Mapping[str, int], model: str) -> None:
    """One data point per image metric of a request (zeros included, so sums and alarms see them)."""
    names = (IMAGES_GENERATED, IMAGES_FILTERED, IMAGES_FAILED, IMAGES_THROTTLED)
    _record([(name, MetricUnit.Count, float(counts.get(name, 0))) for name in names], model)


def record_admission(
    model: str,
    *,
    in_use: int | None = None,
    waited_seconds: float | None = None,
    waiting: int | None = None,
    no_slot: bool = False,
) -> None:
    """Admission control's metrics of one take (``handlers/admission.py``): the slots in use after it,
    the seconds its branch waited, the branches waiting, or a refusal (``NoSlot``)."""
    values: list[tuple[str, MetricUnit, float]] = []
    if in_use is not None:
        values.append((ADMISSION_SLOTS_IN_USE, MetricUnit.Count, float(in_use)))
    if waited_seconds is not None:
        values.append((ADMISSION_WAIT_SECONDS, MetricUnit.Seconds, waited_seconds))
    if waiting is not None:
        values.append((ADMISSION_WAITING, MetricUnit.Count, float(waiting)))
    values.append((ADMISSION_NO_SLOT, MetricUnit.Count, 1.0 if no_slot else 0.0))
    _record(values, model)


def record_hand_off(model: str, report: HandOffReport) -> None:
    """The seconds each branch woken by a release or a fill had waited (``AdmissionWaitSeconds``)."""
    if report.waited_seconds:
        _record([(ADMISSION_WAIT_SECONDS, MetricUnit.Seconds, w) for w in report.waited_seconds], model)
