"""The aggregation step: one manifest for a request, from the Map's per-image records.

Nothing is lost: every image the manifest reports as SUCCEEDED is checked in S3 (it exists, is a PNG,
has the size the branch reported); an image whose branch failed after its object was written is
found and kept; every other image carries a stable reason code. ``manifest.json`` is written beside
the images (without presigned URLs, which expire, but with each image's lasting link where the
deployment mints them); the returned manifest carries a fresh URL for each image, and the API adds
one to download it (:func:`with_presigned_urls`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from image_pipeline.contract.errors import (
    FILTER_REASONS,
    AllImagesFiltered,
    ImagesFailed,
    ImagesThrottled,
    StorageError,
    cause_message,
    is_not_found,
    reason_code_for_error,
)
from image_pipeline.core.cancellation import CANCELLED, is_cancelled
from image_pipeline.core.cost import image_cost, request_cost
from image_pipeline.models.registry import get_adapter

MANIFEST_VERSION = "1"
#: Images checked in S3 at once: one HeadObject per image, in parallel, so a 40-image manifest costs a
#: few S3 round trips, not forty in a row (the S3 client's pool holds 50 connections).
HEAD_WORKERS = 16
#: Longest message of a failed image in the manifest (a Lambda error's cause holds its stack trace).
MAX_MESSAGE_CHARS = 500


def _head(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise StorageError(f"could not check s3://{bucket}/{key}: {exc}") from None


def _image_record(planned: dict[str, Any], result: dict[str, Any] | None, s3: Any, bucket: str) -> dict:
    base = {"index": planned["index"], "seed": planned["seed"], "key": None}
    if result is None:
        return {**base, "status": "FAILED", "reason_code": "MISSING_RESULT", "message": "no branch result"}
    status = result.get("status")
    if status == "FILTERED":
        return {
            **base,
            "seed": result.get("seed", planned["seed"]),
            "status": "FILTERED",
            "reason_code": result.get("reason_code") or "CONTENT_FILTERED_OUTPUT",
            "message": result.get("message"),
        }
    head = _head(s3, bucket, planned["key"])
    if head is not None and head.get("ContentType") == "image/png" and head.get("ContentLength", 0) > 0:
        metadata = head.get("Metadata") or {}
        return {
            **base,
            "seed": result.get("seed") or int(metadata.get("seed", planned["seed"])),
            "key": planned["key"],
            "status": "SUCCEEDED",
            "reason_code": None,
            "message": None if status == "SUCCEEDED" else "stored before its branch failed; kept",
            "content_type": "image/png",
            "size_bytes": head["ContentLength"],
            "width": result.get("width"),
            "height": result.get("height"),
            # served by the prompt cache: a copy of an earlier image (core/image_index.py), cost 0
            **({"cached": True, "cached_from": result.get("cached_from")} if result.get("cached") else {}),
        }
    if status == "SUCCEEDED":
        return {
            **base,
            "status": "FAILED",
            "reason_code": "STORAGE_MISSING",
            "message": "the branch reported the image stored, but it is not in the bucket",
        }
    if status == CANCELLED:  # its job was cancelled before it started (and nothing is stored: checked)
        return {**base, "status": "FAILED", "reason_code": CANCELLED, "message": result.get("message")}
    error = str(result.get("error") or "")
    return {
        **base,
        "status": "FAILED",
        "reason_code": reason_code_for_error(error),
        "message": cause_message(result.get("cause"))[:MAX_MESSAGE_CHARS] or error,
    }


def _image_records(
    planned: list[dict[str, Any]], results: dict[int, dict[str, Any]], s3: Any, bucket: str
) -> list[dict[str, Any]]:
    """One record per planned image, in order; their S3 checks run in parallel (boto3 clients are
    thread-safe). A StorageError from any check is raised, as it would be one at a time."""

    def record(plan: dict[str, Any]) -> dict[str, Any]:
        return _image_record(plan, results.get(int(plan["index"])), s3, bucket)

    if len(planned) <= 1:
        return [record(plan) for plan in planned]
    with ThreadPoolExecutor(max_workers=min(HEAD_WORKERS, len(planned))) as pool:
        return list(pool.map(record, planned))


def build_manifest(
    state: dict[str, Any],
    *,
    s3: Any,
    bucket: str,
    expires_in: int,
    now: datetime | None = None,
    on_stored: Callable[[dict[str, Any]], None] | None = None,
    links: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Build, store and return the manifest of a planned request whose Map results are in ``state``.

    Raises AllImagesFiltered / ImagesThrottled / ImagesFailed (after storing the manifest) when no image
    was generated, so the execution fails with a named error and the API never answers 200 for it.
    The manifest says what the request cost (``core/cost.py``): each image's ``cost_usd`` and ``cost``.

    A cancelled job (a branch said ``CANCELLED``, or its marker is there now:
    ``core/cancellation.py``) gets ``"cancelled": true`` and its manifest is returned whatever it holds:
    the job ended because it was asked to, and every image stored until then is listed. A retry's
    manifest names the job it retried (``retry_of``). ``on_stored`` is called with the manifest once it
    is stored, before any no-image error is raised (BuildManifest settles the job's spend there). ``links`` (a
    :meth:`~image_pipeline.core.lasting_links.LinkMinter.with_links`) gives each stored image its
    lasting ``link`` and ``download_link``, in ``manifest.json`` too.
    """
    now = now or datetime.now(UTC)
    results = {int(r["index"]): r for r in state.get("results") or [] if isinstance(r, dict) and "index" in r}
    images = _image_records(state["images"], results, s3, bucket)
    cancelled = any(r.get("status") == CANCELLED for r in results.values()) or is_cancelled(
        s3, bucket, state.get("execution_name")
    )
    counts = Counter(i["status"] for i in images)
    succeeded = counts["SUCCEEDED"]
    status = "SUCCEEDED" if succeeded == len(images) else "PARTIAL" if succeeded else "FAILED"
    adapter = get_adapter(state["model"])
    request = state["request"]
    cost = request_cost(images, results, registry_id=adapter.registry_id, quality=request.get("quality"))
    price = cost["model_price"]["usd_per_image"] if cost["model_price"] else None
    # Where each image comes from: the operation, the stored images it read, its parameters.
    lineage = adapter.lineage(request)
    images = [
        {**image, "cost_usd": image_cost(image, price), **({"lineage": lineage} if lineage else {})}
        for image in images
    ]
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "request_id": state["request_id"],
        "caller_namespace": state.get("caller_namespace"),
        "status": status,
        "model": {"id": adapter.registry_id, "model_id": adapter.model_id},
        "prompt": request.get("prompt"),
        "negative_prompt": request.get("negative_prompt"),
        "parameters": {k: v for k, v in request.items() if k not in {"prompt", "negative_prompt"}},
        "requested": len(images),
        "succeeded": succeeded,
        "filtered": counts["FILTERED"],
        "failed": counts["FAILED"],
        "bucket": bucket,
        "prefix": state["prefix"],
        "manifest_key": state["manifest_key"],
        "received_at": state.get("received_at"),
        "completed_at": now.isoformat(timespec="seconds"),
        "warnings": list(state.get("warnings") or []),
        "cancelled": cancelled,
        "retry_of": state.get("retry_of"),
        "cost": cost,
        "images": images,
    }
    if links is not None:
        manifest = links(manifest)
    try:
        s3.put_object(
            Bucket=bucket,
            Key=state["manifest_key"],
            Body=json.dumps(manifest, indent=2).encode(),
            ContentType="application/json",
        )
    except ClientError as exc:
        raise StorageError(f"could not write the manifest: {exc}") from None
    if on_stored is not None:
        on_stored(manifest)

    if status == "FAILED" and not cancelled:
        raise _no_image_error(manifest)
    return with_presigned_urls(manifest, s3=s3, expires_in=expires_in, now=now, downloads=False)


def with_presigned_urls(
    manifest: dict[str, Any],
    *,
    s3: Any,
    expires_in: int,
    now: datetime | None = None,
    downloads: bool = True,
) -> dict[str, Any]:
    """A copy of ``manifest`` with fresh presigned GET URLs for each stored image: ``url`` to show
    it and, with ``downloads``, ``download_url`` to save it (S3 answers that one with
    ``Content-Disposition: attachment``, since a browser ignores the ``download`` attribute of a
    link to another origin). The workflow's own output carries ``url`` only: a URL signed by a
    role carries its session token (a kilobyte or two), and forty images' URLs twice over could
    pass the 256 KiB Step Functions allows a state's output; the API adds ``download_url``."""
    now = now or datetime.now(UTC)
    images = []
    for image in manifest["images"]:
        image = dict(image)
        image.pop("download_url", None)
        if image.get("key"):
            params = {"Bucket": manifest["bucket"], "Key": image["key"]}
            image["url"] = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)
            if downloads:
                image["download_url"] = s3.generate_presigned_url(
                    "get_object",
                    Params={**params, "ResponseContentDisposition": attachment(image["key"])},
                    ExpiresIn=expires_in,
                )
        images.append(image)
    expires = (now + timedelta(seconds=expires_in)).isoformat(timespec="seconds")
    return {**manifest, "images": images, "urls_expire_at": expires}


def attachment(key: str) -> str:
    """A ``Content-Disposition`` that saves the object under its key's file name (RFC 6266)."""
    name = key.rsplit("/", 1)[-1]
    plain = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name) or "image.png"
    return f'attachment; filename="{plain}"'


#: How a failed request's message says where its manifest is (:func:`stored_manifest_location`).
_MANIFEST_AT = "Manifest: s3://"


def stored_manifest_location(message: str) -> tuple[str, str] | None:
    """``(bucket, key)`` of the manifest a request stored before failing with a no-image error, read
    from the error's message; None when the message names none (the request failed before planning)."""
    if _MANIFEST_AT not in message:
        return None
    bucket, _, key = message.rsplit(_MANIFEST_AT, 1)[1].strip().partition("/")
    return (bucket, key) if bucket and key.endswith("manifest.json") else None


def _no_image_error(manifest: dict[str, Any]) -> Exception:
    reasons = Counter(i["reason_code"] for i in manifest["images"])
    summary = ", ".join(f"{code} x{n}" for code, n in reasons.most_common())
    where = f"s3://{manifest['bucket']}/{manifest['manifest_key']}"
    text = f"No image was generated ({summary}). {_MANIFEST_AT}{where.removeprefix('s3://')}"
    if set(reasons) <= FILTER_REASONS:
        return AllImagesFiltered(text)
    if set(reasons) == {"THROTTLED"}:
        return ImagesThrottled(text)
    return ImagesFailed(text)
