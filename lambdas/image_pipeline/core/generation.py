"""One Map branch: invoke the model for one image, store the PNG, return the image's record."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from image_pipeline.contract.errors import (
    ModelResponseInvalid,
    ModelTimeout,
    ModelUnavailable,
    StorageError,
    is_not_found,
)
from image_pipeline.core.cancellation import cancelled_record, is_cancelled
from image_pipeline.core.image_index import ImageIndex, cache_key
from image_pipeline.core.refine import read_stored_images
from image_pipeline.models.base import Outcome, error_for_client_error, png_size
from image_pipeline.models.registry import get_adapter


def invoke_model(bedrock: Any, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Call InvokeModel and return the parsed JSON answer; errors become named errors or an Outcome.

    A model that does not answer within the client's read timeout (after botocore's own attempts,
    ``BEDROCK_READ_TIMEOUT_SECONDS`` x ``BEDROCK_MAX_ATTEMPTS``), or stalls while its answer is read,
    is ``ModelTimeout``: named and retried by the state machine, and well inside the function's own
    timeout (``core/time_budget.py``), so it never ends as a Lambda timeout.
    """
    try:
        response = bedrock.invoke_model(
            modelId=model_id,
            body=json.dumps(body),
            contentType="application/json",
            accept="application/json",
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        classified = error_for_client_error(str(error.get("Code", "")), str(error.get("Message", "")))
        if isinstance(classified, Outcome):
            return {"__outcome__": classified}
        raise classified from None
    except (ReadTimeoutError, ConnectTimeoutError) as exc:
        raise ModelTimeout(f"no answer from Bedrock in time: {exc}") from None
    except (BotocoreConnectionError, HTTPClientError) as exc:
        # Endpoint unreachable, connection reset or closed mid-answer (after botocore's own retries):
        # transient, so the state machine retries it as ModelUnavailable.
        raise ModelUnavailable(f"cannot reach Bedrock: {exc}") from None
    try:
        payload = json.loads(response["body"].read())
    except ReadTimeoutError as exc:  # the answer's body stalled: raised by read(), not by invoke_model
        raise ModelTimeout(f"Bedrock's answer stopped arriving: {exc}") from None
    except (IncompleteReadError, HTTPClientError) as exc:  # cut short (ResponseStreamingError included)
        raise ModelUnavailable(f"Bedrock's answer was cut short: {exc}") from None
    except (ValueError, KeyError) as exc:
        raise ModelResponseInvalid("the model's answer is not JSON") from exc
    if not isinstance(payload, dict):
        raise ModelResponseInvalid("the model's answer is not a JSON object")
    return payload


def copy_cached(
    s3: Any, bucket: str, source: dict[str, Any], key: str, event: dict[str, Any]
) -> dict[str, Any] | None:
    """Copy a cached image (an index item) to ``key`` with CopyObject; None when its object is gone
    (expired or deleted before its item): then the model makes the image."""
    source_key = str(source["key"])
    try:
        s3.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": source_key},
            MetadataDirective="REPLACE",
            ContentType="image/png",
            Metadata={
                "request-id": str(event.get("request_id", "")),
                "model-id": str(source.get("model_id") or ""),
                "seed": str(source.get("seed")),
                "index": str(event["image"]["index"]),
                "cached-from": source_key,
            },
        )
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise StorageError(f"could not copy s3://{bucket}/{source_key} to {key}: {exc}") from None
    return {
        "seed": source.get("seed"),
        "status": "SUCCEEDED",
        "content_type": "image/png",
        "size_bytes": source.get("size_bytes"),
        "width": source.get("width"),
        "height": source.get("height"),
        "model_latency_ms": None,
        "cached": True,
        "cached_from": source_key,
    }


def generate_image(
    event: dict[str, Any],
    *,
    bedrock: Any,
    s3: Any,
    bucket: str,
    region: str = "",
    catalog: ImageIndex | None = None,
    price: float | None = None,
    after_model_call: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Generate and store image ``event['image']`` of a planned request.

    ``event`` is a Map item: ``{"request_id", "execution_name", "model", "request", "image": {"index",
    "seed", "key"}}``. An operation on a stored image names its images by key in ``request``
    (``source_image``, ``mask_image``, ``style_image``): they are read here, once, and the record says
    where the image comes from (``lineage``). When the job was cancelled (``core/cancellation.py``), nothing is generated: the
    record says ``CANCELLED`` and the model is not called.
    The model is invoked from ``region`` by its model id, or by its inference profile id where the
    model facts say it is reached through one (``ImageModelAdapter.invoke_id``).
    Content-filter outcomes are returned (status FILTERED, never retried); every other failure is
    raised as a named error, which the state machine retries if transient and records if not.

    With the image index (``catalog``, ``core/image_index.py``), a request whose plan allows the prompt cache
    (``event["cache"]``: an explicit seed, a model whose seed reproduces its image, not opted out) is
    first looked up by the hash of the body the model would get: a hit is copied (CopyObject) to this
    image's key and marked ``cached`` with the key it came from, and the model is not called. Every
    image gets its index item once its outcome is known (a failed write is logged, never raised);
    ``price`` is the model's price of one image (its item's cost; 0 for a cached one).

    ``after_model_call`` runs as soon as the model's answer is understood (an image or a filter's
    outcome), before the upload: the branch gives its admission slot back there (``core/admission.release_after_call``),
    so the slot is held for the model's call, not for the S3 write and the state transitions after it.
    It does not run when the call or the reading of its answer raised (a throttle, a timeout, an
    answer the model marks as its own error is retried by the state machine with the slot still held; ``ReleaseSlotAfterFailure`` gives it back if the branch fails).
    """
    adapter = get_adapter(event["model"])
    image = event["image"]
    index, seed, key = int(image["index"]), int(image["seed"]), str(image["key"])
    record: dict[str, Any] = {"index": index, "seed": seed, "key": key, "model_id": adapter.model_id}
    if is_cancelled(s3, bucket, event.get("execution_name")):
        return cancelled_record(index, seed, adapter.model_id)

    params = event["request"]
    lineage = adapter.lineage(params)
    if lineage is not None:
        record["lineage"] = lineage
    # The stored images an operation works on, read once by this branch (the state carries their keys).
    inputs = read_stored_images(s3, bucket, adapter.input_keys(params))
    body = adapter.build_body(params, seed, inputs)
    key_of_cache = None
    if catalog is not None and adapter.seed_reproducible and lineage is None:
        key_of_cache = cache_key(
            adapter.model_id,
            body,
            namespace=str(event.get("caller_namespace") or ""),
            shared=catalog.share_cache,
        )
    if catalog is not None and key_of_cache and event.get("cache"):
        hit = _cached(catalog, key_of_cache)
        copied = copy_cached(s3, bucket, hit, key, event) if hit else None
        if copied is not None:
            cached_record = {**record, **copied}
            catalog.put_image(event, cached_record, cost_usd=0.0, cache_key=key_of_cache)
            return cached_record

    started = time.perf_counter()
    payload = invoke_model(bedrock, adapter.invoke_id(region), body)
    model_ms = round((time.perf_counter() - started) * 1000)
    outcome = payload.get("__outcome__") or adapter.parse_response(payload, seed)
    if after_model_call is not None:  # only once the answer is understood: a ModelUnavailable raised
        after_model_call()  # by the parse is retried by the state machine, and must keep its slot
    if outcome.image is None:
        filtered = {
            **record,
            "seed": outcome.seed if outcome.seed is not None else seed,
            "key": None,
            "status": "FILTERED",
            "reason_code": outcome.reason_code,
            "message": outcome.message,
            "model_latency_ms": model_ms,
        }
        if catalog is not None:
            billed = outcome.reason_code == "CONTENT_FILTERED_OUTPUT"
            catalog.put_image(event, filtered, cost_usd=price if billed else 0.0, cache_key=None)
        return filtered

    width, height = png_size(outcome.image)
    used_seed = outcome.seed if outcome.seed is not None else seed
    try:
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=outcome.image,
            ContentType="image/png",
            Metadata={
                "request-id": str(event.get("request_id", "")),
                "model-id": adapter.model_id,
                "seed": str(used_seed),
                "index": str(index),
            },
        )
    except ClientError as exc:
        raise StorageError(f"could not write s3://{bucket}/{key}: {exc}") from None
    stored = {
        **record,
        "seed": used_seed,
        "status": "SUCCEEDED",
        "content_type": "image/png",
        "size_bytes": len(outcome.image),
        "width": width,
        "height": height,
        "model_latency_ms": model_ms,
    }
    if catalog is not None:
        catalog.put_image(
            event, stored, cost_usd=price, cache_key=key_of_cache if used_seed == seed else None
        )
    return stored


def _cached(index: ImageIndex, key: str) -> dict[str, Any] | None:
    """The cache's image of ``key``; a failed lookup is a miss (the model is called)."""
    try:
        return index.find_cached(key)
    except (ClientError, BotoCoreError):
        return None
