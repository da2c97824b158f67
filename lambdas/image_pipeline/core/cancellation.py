"""Cancelling a job without losing what it made: a marker the workflow's steps look for.

``DELETE /jobs/{id}`` writes ``cancellations/<execution name>`` (:func:`mark_cancelled`), once: a
conditional write (``If-None-Match: *``), so of two cancels exactly one is told it cancelled the job.
The execution is not stopped. Each Map branch looks for the marker before it calls the model
(``core/generation.py``): a branch that starts after the cancel returns a ``CANCELLED`` record without a
model call, a branch already calling the model finishes and stores its image. Then ``BuildManifest``
runs as always: every stored image is checked and listed, the cancelled ones carry the reason code
``CANCELLED``, and the manifest says ``"cancelled": true`` (``core/manifest.py``). So the manifest of a
cancelled job is complete, and nothing stored is left out of it (``StopExecution`` would end the
execution at once, but a branch's Lambda already running would still store its image afterwards, and
no step would be left to list it).

Looking costs each branch one ``ListObjectsV2`` with the marker's key as prefix (not ``HeadObject``: a
missing key answers 403 rather than 404 to a role without ``s3:ListBucket``, and ``ListBucket`` can be
granted for this prefix alone).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from image_pipeline.contract.errors import StorageError
from image_pipeline.core.keys import CANCELLATIONS_PREFIX, cancellation_key

#: The status of a Map branch's record, and the reason code of its image in the manifest.
CANCELLED = "CANCELLED"
#: S3's answers to a conditional write whose condition failed (the marker exists), or that raced another.
ALREADY_WRITTEN = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
#: Pages of markers read when listing a caller's cancelled jobs (1,000 keys each).
MAX_MARKER_PAGES = 5


def is_cancelled(s3: Any, bucket: str, execution_name: str | None) -> bool:
    """Whether execution ``execution_name`` was cancelled (False when no name is given: a plan made
    before cancellation existed)."""
    if not execution_name:
        return False
    key = cancellation_key(execution_name)
    try:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    except ClientError as exc:
        raise StorageError(f"could not look for a cancellation of {execution_name}: {exc}") from None
    return any(item.get("Key") == key for item in listed.get("Contents", []))


def write_once(s3: Any, bucket: str, key: str, body: Mapping[str, Any]) -> bool:
    """Write ``body`` as JSON at ``key`` unless an object is there already (S3's conditional write,
    ``If-None-Match: *``); False when it was (or another writer won the race)."""
    try:
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(body).encode(),
            ContentType="application/json",
            IfNoneMatch="*",
        )
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) in ALREADY_WRITTEN:
            return False
        raise
    return True


def mark_cancelled(s3: Any, bucket: str, execution_name: str, *, now: datetime | None = None) -> bool:
    """Write the cancellation marker of ``execution_name``; False when it was already there."""
    body = {"execution_name": execution_name, "cancelled_at": (now or datetime.now(UTC)).isoformat()}
    return write_once(s3, bucket, cancellation_key(execution_name), body)


def cancelled_names(s3: Any, bucket: str, name_prefix: str, *, max_pages: int = MAX_MARKER_PAGES) -> set[str]:
    """The names of the cancelled executions whose name starts with ``name_prefix`` (a caller's
    ``<namespace>-``), from at most ``max_pages`` pages of markers."""
    names: set[str] = set()
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": f"{CANCELLATIONS_PREFIX}{name_prefix}"}
    for _ in range(max_pages):
        page = s3.list_objects_v2(**kwargs)
        names.update(str(item["Key"])[len(CANCELLATIONS_PREFIX) :] for item in page.get("Contents", []))
        if not page.get("IsTruncated"):
            break
        kwargs["ContinuationToken"] = page["NextContinuationToken"]
    return names


def cancelled_record(index: int, seed: int, model_id: str) -> dict[str, Any]:
    """A Map branch's record of an image it did not make because its job was cancelled."""
    return {
        "index": index,
        "seed": seed,
        "key": None,
        "model_id": model_id,
        "status": CANCELLED,
        "reason_code": CANCELLED,
        "message": "the job was cancelled before this image was started; the model was not called",
    }
