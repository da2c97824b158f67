"""A running job's images, image by image, read from its execution history.

Each Map branch's states end with the image's record as a state's output: the ``GenerateImage``
Lambda's answer (``SUCCEEDED`` with the stored key, ``FILTERED``, or ``CANCELLED``), or, when the
branch's error was caught, ``RecordImageFailure``'s (``FAILED`` with the error name). Step Functions
(and moto's interpreter) records each state's output in its ``TaskStateExited`` / ``PassStateExited``
event, so the history that ``GET /jobs/{id}`` already reads for the job's progress also says which
images are stored, in the order they were stored, at no extra call. A record is recognised by its
shape (an integer ``index``, a ``seed``, a record ``status``), not by the state's name, so states
added around the model call (a slot taken and given back) do not hide it; the first state that
outputs an image's record is when it was stored. (``MapIterationSucceeded`` carries only the
iteration's index; a branch's input, or a caught error's output, holds ``image`` and ``error``, not
a record, and is skipped.)

:func:`images_from_history` turns the events into one entry per image (its ``index``, ``seed``,
``status``, ``reason_code``, ``key``, ``width``/``height``), first come first listed: the order never
changes as the history grows, so an entry's position is a stable event id for the events stream
(``core/job_events.py``). :func:`signed_images` adds presigned URLs for the caller's own keys.
Why the history and not a listing of the job's S3 prefix: ``docs/decisions.md``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from image_pipeline.contract.errors import reason_code_for_error
from image_pipeline.core.cancellation import CANCELLED
from image_pipeline.core.keys import namespace_prefix
from image_pipeline.core.manifest import with_presigned_urls

#: Pages of execution history read for a running job (1000 events each: a 40-image job with
#: retries writes a few hundred).
MAX_HISTORY_PAGES = 5
_EXIT_EVENTS = frozenset({"TaskStateExited", "PassStateExited"})
_STATUSES = frozenset({"SUCCEEDED", "FILTERED", "FAILED", CANCELLED})


def read_history(sfn: Any, arn: str, *, max_pages: int = MAX_HISTORY_PAGES) -> list[Mapping[str, Any]]:
    """The events of an execution's history, oldest first, from at most ``max_pages`` pages."""
    events: list[Mapping[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    for _ in range(max_pages):
        page = sfn.get_execution_history(**kwargs)
        events.extend(page.get("events", []))
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    return events


def _record_of(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The image record an event carries, or None."""
    if event.get("type") not in _EXIT_EVENTS:
        return None
    details = event.get("stateExitedEventDetails") or {}
    try:
        record = json.loads(details.get("output") or "null")
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("status") not in _STATUSES or "seed" not in record:
        return None
    if not isinstance(record.get("index"), int) or isinstance(record.get("index"), bool):
        return None
    return record


def image_entry(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the API says of one image while its job runs: the manifest's words for it (a cancelled
    image is ``FAILED`` with reason ``CANCELLED``; a failure's reason code from its error name), with
    ``key`` only for a stored image."""
    status = str(record["status"])
    reason = record.get("reason_code")
    if status == CANCELLED:
        status, reason = "FAILED", CANCELLED
    elif status == "FAILED":
        reason = reason or reason_code_for_error(str(record.get("error") or ""))
    stored = status == "SUCCEEDED" and bool(record.get("key"))
    return {
        "index": int(record["index"]),
        "seed": record.get("seed"),
        "status": status,
        "reason_code": None if status == "SUCCEEDED" else reason,
        "key": record.get("key") if stored else None,
        "width": record.get("width") if stored else None,
        "height": record.get("height") if stored else None,
    }


def images_from_history(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One :func:`image_entry` per image whose branch has ended, in the order the branches ended
    (the history's); an index met twice keeps its first entry."""
    seen: set[int] = set()
    images: list[dict[str, Any]] = []
    for event in events:
        record = _record_of(event)
        if record is None or record["index"] in seen:
            continue
        seen.add(int(record["index"]))
        images.append(image_entry(record))
    return images


def signed_images(
    images: list[dict[str, Any]], *, s3: Any, bucket: str, namespace: str, expires_in: int
) -> list[dict[str, Any]]:
    """``images`` with presigned ``url`` and ``download_url`` for each stored one whose key is in the
    caller's namespace (every key of the caller's own job is; any other is not signed)."""
    prefix = namespace_prefix(namespace)
    own = [{**i, "key": i["key"] if str(i.get("key") or "").startswith(prefix) else None} for i in images]
    return list(
        with_presigned_urls({"bucket": bucket, "images": own}, s3=s3, expires_in=expires_in)["images"]
    )
