"""Batch generation: a JSONL file of requests in S3, one child execution of the per-request workflow
per line.

The batch workflow (``statemachine/batch_generate.asl.json``) has three steps, two of them here:

* :func:`prepare_batch` reads ``batches/<name>.jsonl`` and turns every non-blank line into an *item*:
  the request object and its child execution name, or, for a line that is not a JSON object, the
  reason. The items go to ``batch-results/<batch id>/items.json``, which the Distributed Map reads
  with its ItemReader (JSON: moto's interpreter has no JSONL reader, see ``docs/operations.md``).
* The Distributed Map starts one child execution of the per-request (Standard) workflow per item,
  with the envelope ``{"request": <the line>, "caller": <the batch's caller>}`` as its input. The
  batch's caller is the system caller of the folder the file was uploaded to
  (:func:`image_pipeline.core.tenancy.batch_caller`: ``batches/team-a/x.jsonl`` ->
  ``batch:batches/team-a/``), so a batch's images are under that caller's namespace, and a line that
  names a caller of its own is refused as an unknown field like any request.
* :func:`build_batch_manifest` describes every child execution and writes
  ``batch-results/<batch id>/batch_manifest.json``: per line its request id, status, manifest key,
  image counts and error; and the totals.

Names are deterministic, so a re-run does not generate again. The batch id is the file's name plus a
digest of its bytes; a child's name is the file's name, the line number and a digest of the line's
request: re-uploading the same file finds every child already run (``ExecutionAlreadyExists``) and
only reports it again; a changed line gets a new child, the unchanged lines keep theirs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from image_pipeline.contract.errors import (
    ImageGenError,
    InvalidRequest,
    StorageError,
    cause_message,
    is_not_found,
)
from image_pipeline.contract.request import parse_request
from image_pipeline.core.jobs import execution_arn
from image_pipeline.core.keys import BATCH_PREFIX, BATCH_SUFFIX, RESULTS_PREFIX, manifest_key, request_prefix
from image_pipeline.core.settings import BatchSettings
from image_pipeline.core.tenancy import Caller, batch_caller

ITEMS_FILE = "items.json"
MANIFEST_FILE = "batch_manifest.json"
BATCH_MANIFEST_VERSION = "1"
#: The Distributed Map's error when failed items exceed the tolerated percentage.
MAP_THRESHOLD_ERROR = "States.ExceedToleratedFailureThreshold"
#: The batch's error then. A Fail state cannot raise a ``States.*`` name, so the workflow, which
#: catches the Map's error to write the manifest first, fails with this one (the cause names the Map's).
THRESHOLD_ERROR = "BatchFailureThresholdExceeded"
#: The batch's error when the Map failed otherwise (its items could not be read, ...).
MAP_FAILED_ERROR = "BatchFailed"
#: Error of an item whose line is not a JSON object (no child execution is started for it).
INVALID_LINE_ERROR = "InvalidJsonLine"
#: A request line longer than this is not read (an execution input holds at most 256 KiB).
MAX_LINE_BYTES = 64 * 1024

#: Line statuses. SUCCEEDED / PARTIAL: the request's manifest status (every image, or some).
#: FILTERED: no image, all blocked by the content filter. INVALID: the line is not a valid request.
#: FAILED: the request failed otherwise. NOT_RUN: no child execution (the batch stopped first).
#: RUNNING: the child execution had not ended when the manifest was built.
LINE_STATUSES = ("SUCCEEDED", "PARTIAL", "FILTERED", "INVALID", "FAILED", "NOT_RUN", "RUNNING")
#: Statuses of lines whose Map iteration failed: they count towards the tolerated failure percentage.
FAILED_LINE_STATUSES = frozenset({"FILTERED", "INVALID", "FAILED"})

_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
_MAX_BATCH_NAME = 32
_DESCRIBE_WORKERS = 8


class InvalidBatch(ImageGenError):
    """The batch file or the batch input cannot be used; the message says what to change."""


@cache
def batch_settings() -> BatchSettings:
    """Settings of this container (``batch_settings.cache_clear()`` after changing the environment)."""
    return BatchSettings.from_environ()


# -- names -----------------------------------------------------------------------------------------


def _digest(data: bytes, length: int) -> str:
    return hashlib.sha256(data).hexdigest()[:length]


def batch_name(key: str) -> str:
    """A short execution-name-safe name for the batch file ``key``: ``batches/2026/run 1.jsonl`` ->
    ``2026-run-1``. Long names keep their start and get a digest of the key."""
    stem = key.removeprefix(BATCH_PREFIX).removesuffix(BATCH_SUFFIX)
    name = _NAME_CHARS.sub("-", stem).strip("-_") or "batch"
    if len(name) > _MAX_BATCH_NAME:
        name = f"{name[: _MAX_BATCH_NAME - 9].rstrip('-_')}-{_digest(key.encode(), 8)}"
    return name


def canonical_json(value: Any) -> str:
    """The one serialization of a request used for names and execution inputs."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def child_name(name: str, line: int, request: Any) -> str:
    """The execution name of the child that runs ``line`` of batch ``name`` (also its request id)."""
    return f"{name}-{line:05d}-{_digest(canonical_json(request).encode(), 10)}"


def batch_id(name: str, body: bytes) -> str:
    """The id of one version of a batch file: its name and a digest of its bytes."""
    return f"{name}-{_digest(body, 12)}"


# -- prepare ---------------------------------------------------------------------------------------


def source_of(raw: Any) -> dict[str, Any]:
    """``{"bucket", "key", ...overrides}`` from the execution input.

    The EventBridge rule passes ``{"bucket", "key"}``; a whole S3 "Object Created" event, or its
    ``detail``, is unwrapped too, so a rule or a console run without an input transformer works.
    """
    if not isinstance(raw, dict):
        raise InvalidBatch(
            'The batch input must be a JSON object: {"bucket": ..., "key": "batches/....jsonl"}'
        )
    nested = raw.get("detail")
    detail: dict[str, Any] = nested if isinstance(nested, dict) else raw
    if isinstance(detail.get("bucket"), dict) and isinstance(detail.get("object"), dict):
        raw = {**raw, "bucket": detail["bucket"].get("name"), "key": detail["object"].get("key")}
    bucket, key = raw.get("bucket"), raw.get("key")
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        raise InvalidBatch("bucket and key: give the bucket and the key of the JSONL file")
    if not key.startswith(BATCH_PREFIX):
        raise InvalidBatch(f"key: batch files are read from {BATCH_PREFIX}; upload the file there")
    return raw


def _override(raw: Mapping[str, Any], field: str, low: float, high: float) -> float | None:
    value = raw.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidBatch(f"{field}: must be a number from {low:g} to {high:g}")
    return value


def parse_lines(text: str, *, name: str, max_lines: int, caller: Caller) -> list[dict[str, Any]]:
    """One item per non-blank line (numbered from 1, as an editor shows them).

    An item is ``{"line", "name", "request", "caller", "error", "message"}``: a JSON object becomes a
    request of ``caller`` with its child execution name; anything else keeps ``error``/``message`` and
    no child runs for it.
    """
    items: list[dict[str, Any]] = []
    for number, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        if not line.strip():
            continue
        if len(items) == max_lines:
            raise InvalidBatch(
                f"The file has more than {max_lines} request lines; split it into several files"
            )
        item: dict[str, Any] = {
            "line": number,
            "name": None,
            "request": None,
            "caller": caller.to_input(),
            "error": None,
            "message": None,
        }
        problem = None
        if len(line.encode()) > MAX_LINE_BYTES:
            problem = f"line {number}: longer than {MAX_LINE_BYTES} bytes"
        else:
            try:
                request = json.loads(line)
            except ValueError as exc:
                problem = f"line {number}: not valid JSON ({exc})"
            else:
                if isinstance(request, dict):
                    item.update(request=request, name=child_name(name, number, request))
                else:
                    problem = f'line {number}: a request must be a JSON object, like {{"prompt": "..."}}'
        if problem:
            item.update(error=INVALID_LINE_ERROR, message=problem)
        items.append(item)
    if not items:
        raise InvalidBatch("The file has no request lines: write one JSON request per line")
    return items


def _read_source(s3: Any, bucket: str, key: str, max_bytes: int) -> tuple[str, bytes]:
    """The file's bytes; an S3 event's URL-encoded key (``batches/a+b.jsonl``) is decoded if needed."""
    candidates = [key] if unquote_plus(key) == key else [key, unquote_plus(key)]
    for candidate in candidates:
        try:
            head = s3.head_object(Bucket=bucket, Key=candidate)
        except ClientError as exc:
            if is_not_found(exc):
                continue
            raise StorageError(f"could not read s3://{bucket}/{candidate}: {exc}") from None
        if head["ContentLength"] > max_bytes:
            raise InvalidBatch(f"The file is larger than {max_bytes} bytes; split it into several files")
        body = s3.get_object(Bucket=bucket, Key=candidate)["Body"].read()
        return candidate, body
    raise InvalidBatch(f"key: s3://{bucket}/{key} does not exist")


def prepare_batch(
    raw: Any,
    *,
    s3: Any,
    request_state_machine_arn: str,
    settings: BatchSettings,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Read the batch file, write its items for the Distributed Map, return the batch's plan."""
    source = source_of(raw)
    bucket = source["bucket"]
    key, body = _read_source(s3, bucket, source["key"], settings.max_bytes)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidBatch("The file is not UTF-8 text: write one JSON request per line") from None
    concurrency = _override(source, "max_concurrency", 1, settings.max_concurrency)
    tolerated = _override(source, "tolerated_failure_percentage", 0, 100)

    name = batch_name(key)
    caller = batch_caller(key)
    items = parse_lines(text, name=name, max_lines=settings.max_lines, caller=caller)
    bid = batch_id(name, body)
    results = f"{RESULTS_PREFIX}{bid}/"
    plan = {
        "batch_id": bid,
        "batch_name": name,
        "bucket": bucket,
        "source_key": key,
        "caller_namespace": caller.namespace,
        "results_prefix": results,
        "items_key": results + ITEMS_FILE,
        "manifest_key": results + MANIFEST_FILE,
        "request_state_machine_arn": request_state_machine_arn,
        "lines": len(items),
        "invalid_lines": sum(1 for i in items if i["error"]),
        "max_concurrency": int(concurrency or settings.max_concurrency),
        "tolerated_failure_percentage": float(
            settings.tolerated_failure_percentage if tolerated is None else tolerated
        ),
        "received_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
    }
    _put_json(s3, bucket, plan["items_key"], items)
    return plan


def _put_json(s3: Any, bucket: str, key: str, value: Any) -> None:
    try:
        s3.put_object(
            Bucket=bucket, Key=key, Body=json.dumps(value, indent=1).encode(), ContentType="application/json"
        )
    except ClientError as exc:
        raise StorageError(f"could not write s3://{bucket}/{key}: {exc}") from None


# -- the batch manifest ----------------------------------------------------------------------------


def _describe(sfn: Any, arn: str) -> dict[str, Any] | None:
    try:
        return sfn.describe_execution(executionArn=arn)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            return None
        raise


def _request_manifest(s3: Any, bucket: str, item: Mapping[str, Any]) -> dict[str, Any] | None:
    """The manifest a failed request stored before failing (no image generated), if any."""
    try:
        folder = parse_request(item["request"]).output_folder
        namespace = Caller.from_input(item["caller"]).namespace
        key = manifest_key(request_prefix(folder, item["name"], namespace=namespace))
    except (InvalidRequest, ValueError, KeyError):
        return None
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise StorageError(f"could not read s3://{bucket}/{key}: {exc}") from None


def _counts(manifest: Mapping[str, Any] | None) -> dict[str, Any]:
    if not manifest:
        return {"manifest_key": None, "requested": None, "succeeded": None, "filtered": None, "failed": None}
    return {k: manifest.get(k) for k in ("manifest_key", "requested", "succeeded", "filtered", "failed")}


def line_record(
    item: Mapping[str, Any],
    described: Mapping[str, Any] | None,
    *,
    stored_manifest: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One line of the batch manifest from its item and its child execution (None: never started)."""
    base: dict[str, Any] = {"line": item["line"], "request_id": item.get("name"), "execution_arn": None}
    if item.get("error"):
        return {
            **base,
            "status": "INVALID",
            **_counts(None),
            "error": item["error"],
            "message": item["message"],
        }
    if described is None:
        return {
            **base,
            "status": "NOT_RUN",
            **_counts(None),
            "error": None,
            "message": "no execution was started",
        }
    base["execution_arn"] = described.get("executionArn")
    status = described["status"]
    if status == "RUNNING":
        return {**base, "status": "RUNNING", **_counts(None), "error": None, "message": None}
    if status == "SUCCEEDED":
        output = json.loads(described.get("output") or "{}")
        return {
            **base,
            "status": output.get("status", "SUCCEEDED"),
            **_counts(output),
            "error": None,
            "message": None,
        }
    error = described.get("error") or {"TIMED_OUT": "ExecutionTimedOut", "ABORTED": "ExecutionAborted"}.get(
        status, "ExecutionFailed"
    )
    line_status = {"InvalidRequest": "INVALID", "AllImagesFiltered": "FILTERED"}.get(error, "FAILED")
    return {
        **base,
        "status": line_status,
        **_counts(stored_manifest),
        "error": error,
        "message": cause_message(described.get("cause")) or None,
    }


def _record_for(item: Mapping[str, Any], *, s3: Any, sfn: Any, bucket: str, machine: str) -> dict[str, Any]:
    if item.get("error"):
        return line_record(item, None)
    described = _describe(sfn, execution_arn(machine, item["name"]))
    ended_without_output = described is not None and described["status"] not in {"RUNNING", "SUCCEEDED"}
    stored = None
    if ended_without_output and described and described.get("error") != "InvalidRequest":
        stored = _request_manifest(s3, bucket, item)  # a request that failed after planning
    return line_record(item, described, stored_manifest=stored)


def summarize(
    records: list[dict[str, Any]], *, tolerated_failure_percentage: float, map_error: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Totals, the batch status and its error from the line records.

    The rule is the Distributed Map's: the batch fails when the share of failed lines *exceeds* the
    tolerated percentage. On AWS the Map applies it (``States.ExceedToleratedFailureThreshold``, which
    the workflow catches); moto's interpreter records the threshold without applying it, so this step
    applies the same rule too, and a re-run that finds failed children already run fails the same way.
    """
    statuses = Counter(r["status"] for r in records)
    failed = sum(statuses[s] for s in FAILED_LINE_STATUSES)
    total = len(records)
    images = {k: sum(r[k] or 0 for r in records) for k in ("requested", "succeeded", "filtered", "failed")}
    error: str | None = None
    cause: str | None = None
    if map_error:
        map_error_name = str(map_error.get("Error") or "States.Runtime")
        error = THRESHOLD_ERROR if map_error_name == MAP_THRESHOLD_ERROR else MAP_FAILED_ERROR
        cause = f"{map_error_name}: {cause_message(map_error.get('Cause'))}".rstrip(": ")
    elif failed * 100 > tolerated_failure_percentage * total:
        error = THRESHOLD_ERROR
        cause = (
            f"{failed} of {total} lines failed ({failed * 100 / total:.1f}%), more than the tolerated "
            f"{tolerated_failure_percentage:g}%"
        )
    produced = statuses["SUCCEEDED"] + statuses["PARTIAL"]
    if error or not produced:
        status = "FAILED"
    elif statuses["SUCCEEDED"] == total:
        status = "SUCCEEDED"
    else:
        status = "PARTIAL"
    return {
        "status": status,
        "lines": total,
        "line_statuses": {s: statuses[s] for s in LINE_STATUSES},
        "failed_lines": failed,
        "failure_percentage": round(failed * 100 / total, 2) if total else 0.0,
        "tolerated_failure_percentage": tolerated_failure_percentage,
        "images": images,
        "error": error,
        "cause": cause,
    }


def build_batch_manifest(
    state: Mapping[str, Any], *, s3: Any, sfn: Any, now: datetime | None = None
) -> dict[str, Any]:
    """Describe every line's child execution, write ``batch_manifest.json``, return its summary.

    ``state`` is the plan of :func:`prepare_batch` plus ``map_run`` (the Map's result) or ``map_error``
    (the Map's caught error). The returned summary has ``error``/``cause`` set when the batch must
    fail; the state machine then fails with that error.
    """
    now = now or datetime.now(UTC)
    bucket = state["bucket"]
    try:
        items = json.loads(s3.get_object(Bucket=bucket, Key=state["items_key"])["Body"].read())
    except ClientError as exc:
        raise StorageError(f"could not read the batch items: {exc}") from None
    machine = state["request_state_machine_arn"]
    with ThreadPoolExecutor(max_workers=_DESCRIBE_WORKERS) as pool:
        records = list(
            pool.map(lambda i: _record_for(i, s3=s3, sfn=sfn, bucket=bucket, machine=machine), items)
        )
    summary = summarize(
        records,
        tolerated_failure_percentage=float(state["tolerated_failure_percentage"]),
        map_error=state.get("map_error"),
    )
    head = {
        "batch_manifest_version": BATCH_MANIFEST_VERSION,
        "batch_id": state["batch_id"],
        "bucket": bucket,
        "source_key": state["source_key"],
        "caller_namespace": state.get("caller_namespace"),
        "manifest_key": state["manifest_key"],
        "items_key": state["items_key"],
        "request_state_machine_arn": machine,
        "max_concurrency": state.get("max_concurrency"),
        "map_run": state.get("map_run"),
        "received_at": state.get("received_at"),
        "completed_at": now.isoformat(timespec="seconds"),
    }
    _put_json(s3, bucket, state["manifest_key"], {**head, **summary, "items": records})
    return {**head, **summary}
