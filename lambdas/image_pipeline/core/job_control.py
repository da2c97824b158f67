"""What a caller does with its jobs besides starting one and reading it (``core/jobs.py``): wait for it
(the synchronous routes), cancel it, list them, retry what failed. Shared by the deployed Lambda and
the local server, which pass their own Step Functions and S3 clients.

* **Waiting** (``POST /images``, ``GET /images``): every request is a job of the Standard workflow,
  named ``<namespace>-<request id>``. The route waits for it as RFC 7240's ``Prefer: wait=N`` asks
  (at most what the function's time allows, :func:`wait_preference`), polling DescribeExecution with a
  short backoff (:func:`wait_for_execution`). Ended in time: 200 and the manifest, or the failure's
  status. Not yet: 202 with the job document and ``Location: /jobs/{id}``, and the job goes on; its
  manifest comes from ``GET /jobs/{id}``. No answer loses the work it started. Behind a model's queue
  longer than the wait (``core/admission.QueueEstimate``), the 202 comes at once, with ``queue`` and
  ``Retry-After``: waiting could only end in the same 202.
* **Cancelling** (``DELETE /jobs/{id}``): :func:`cancel_job` writes the job's cancellation marker
  (``core/cancellation.py``); the job stops making images and ends with a complete manifest.
* **Listing** (``GET /jobs``): :func:`list_jobs` reads the caller's jobs from the image index, newest
  first, each with what a history view shows, and pages with an opaque token bound to the caller.
* **Retrying** (``POST /jobs/{id}/retry``): :func:`retry_job` starts a new job of the images that failed
  (and, when asked, those filtered), with their indexes and seeds, naming the job it retries.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from image_pipeline.contract.errors import FieldError, cause_message, is_not_found
from image_pipeline.core.admission import QueueEstimate
from image_pipeline.core.cancellation import cancelled_names, is_cancelled, mark_cancelled
from image_pipeline.core.execution_input import ExecutionInput, RetryOf, read_execution_input
from image_pipeline.core.image_index import (
    CANCELLED,
    FAILED,
    PARTIAL,
    RUNNING,
    SUCCEEDED,
    ImageIndex,
    job_outcome,
    moment_of,
)
from image_pipeline.core.job_history import images_from_history, read_history, signed_images
from image_pipeline.core.jobs import (
    ApiError,
    StartedJob,
    describe_own_execution,
    execution_arn,
    failure_of,
    job_from_execution,
    progress_from_history,
    start_job,
    sync_response,
)
from image_pipeline.core.manifest import stored_manifest_location
from image_pipeline.core.spend import SpendLedger
from image_pipeline.core.tenancy import Caller, execution_name

PREFER_HEADER = "Prefer"
PREFERENCE_APPLIED_HEADER = "Preference-Applied"
#: The first poll of a waiting route comes this long after the start; each next one 1.5 times later,
#: at most :data:`POLL_MAX_SECONDS` apart (0.1, 0.25, 0.48, 0.81, 1.3, 2.06, 3.06, ... s).
POLL_FIRST_SECONDS = 0.1
POLL_FACTOR = 1.5
POLL_MAX_SECONDS = 1.0
#: How long an ended execution may show its status without its output or error (moto sets the status a
#: moment before them; Step Functions answers with both at once).
SETTLE_SECONDS = 0.5
_ENDED = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


# -- waiting ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaitPreference:
    """How long a synchronous route waits, and the ``Preference-Applied`` it answers with (None when
    the client stated no preference)."""

    seconds: float
    applied: str | None = None


def wait_preference(prefer: Iterable[str], longest: float) -> WaitPreference:
    """The wait a client asked for with ``Prefer`` (RFC 7240; each value of each ``Prefer`` header),
    capped at ``longest`` (what the function's time allows).

    ``wait=N`` (seconds, an integer) waits ``min(N, longest)``; ``respond-async`` alone does not wait
    (202 at once unless the job has already ended). Without either, the route waits ``longest``. A
    preference that cannot be read (``wait=soon``) is ignored, as RFC 7240 asks of a preference a server
    does not understand. ``Preference-Applied`` names what was honoured, with the wait actually used.
    """
    wait: int | None = None
    respond_async = False
    for header in prefer:
        for preference in header.split(","):
            token, _, value = preference.split(";", 1)[0].strip().partition("=")
            name, value = token.strip().lower(), value.strip().strip('"')
            if name == "respond-async":
                respond_async = True
            elif name == "wait" and value.isdigit():
                wait = int(value)
    if wait is not None:
        seconds = min(float(wait), longest)
        return WaitPreference(seconds, f"wait={seconds:g}")
    if respond_async:
        return WaitPreference(0.0, "respond-async")
    return WaitPreference(longest)


def poll_delays(
    first: float = POLL_FIRST_SECONDS, factor: float = POLL_FACTOR, longest: float = POLL_MAX_SECONDS
) -> Iterator[float]:
    """The pauses between polls: ``first``, then ``factor`` times the last, at most ``longest``."""
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, longest)


def _settled(described: Mapping[str, Any]) -> bool:
    """Whether an ended execution's result is all there (output for a success, error or cause else)."""
    if described["status"] == "SUCCEEDED":
        return described.get("output") is not None
    if described["status"] == "FAILED":
        return bool(described.get("error") or described.get("cause"))
    return True


def wait_for_execution(
    sfn: Any,
    arn: str,
    seconds: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    delays: Iterable[float] | None = None,
) -> dict[str, Any] | None:
    """DescribeExecution of ``arn`` once it has ended, polling with :func:`poll_delays` for at most
    ``seconds``; None when it is still running then. A poll that fails (throttled, timed out) is made
    again at the next step, until the wait ends."""
    deadline = clock() + seconds
    ended_at: float | None = None
    pauses = iter(delays if delays is not None else poll_delays())
    while True:
        try:
            described = dict(sfn.describe_execution(executionArn=arn))
        except ClientError:
            described = {"status": "RUNNING"}
        now = clock()
        if described["status"] in _ENDED:
            ended_at = ended_at if ended_at is not None else now
            if _settled(described) or now - ended_at >= SETTLE_SECONDS:
                return described
            sleep(0.02)
            continue
        if now >= deadline:
            return None
        sleep(min(next(pauses), deadline - now))


class SyncAnswer(NamedTuple):
    """A synchronous route's answer: status, body, headers. ``manifest`` is True when the body is a
    manifest (200), whose image links the caller makes (presigned, or the local server's)."""

    status: int
    body: Any
    headers: dict[str, str]
    manifest: bool


def job_cancelled(job_id: str) -> ApiError:
    return ApiError(
        409, "JobCancelled", f"job {job_id} was cancelled; GET /jobs/{job_id} has the images it made"
    )


def run_and_wait(
    sfn: Any,
    state_machine_arn: str,
    submission: ExecutionInput,
    job_id: str,
    wait: WaitPreference,
    *,
    s3: Any,
    expires_in: int,
    location: Callable[[str], str],
    poll_sfn: Any = None,
    ledger: SpendLedger | None = None,
    index: ImageIndex | None = None,
    bucket: str | None = None,
    queue: QueueEstimate | None = None,
) -> SyncAnswer:
    """Start ``submission`` as job ``job_id`` of its caller (the Standard workflow) and wait for it.

    Ended within ``wait``: 200 and its manifest, or the failure's status and error (as
    :func:`~image_pipeline.core.jobs.sync_response`; a cancelled job is 409 ``JobCancelled``). Still
    running: 202 with the job document (``GET /jobs/{id}``'s, plus ``status_url``) and ``Location``;
    with ``bucket``, it lists the images stored so far (``images_so_far``, presigned, read from the same
    history as its progress), so the images the wait saw made are not lost to the client.
    ``poll_sfn`` (default ``sfn``) is the client the wait polls with; with a ``ledger`` the job's
    estimate is reserved first (429 ``SpendLimitExceeded`` past the caller's daily ceiling); ``index``
    lists the job at once.

    ``queue`` (:func:`~image_pipeline.core.admission_runtime.read_queue_estimate`): when the model's
    queue would hold the job past the wait (:meth:`~image_pipeline.core.admission.QueueEstimate.
    outlasts`), the job is started and handed over at once, without waiting: the 202 carries
    ``queue`` (``{"ahead", "estimated_seconds"}``) and ``Retry-After`` (the estimate, when to look),
    and no ``Preference-Applied`` (the wait asked for was not used).
    """
    start_job(sfn, state_machine_arn, submission, job_id, ledger=ledger, index=index)
    arn = execution_arn(state_machine_arn, execution_name(submission.caller, job_id))
    queued = queue is not None and queue.outlasts(wait.seconds)
    headers = {PREFERENCE_APPLIED_HEADER: wait.applied} if wait.applied and not queued else {}
    described = None if queued else wait_for_execution(poll_sfn or sfn, arn, wait.seconds)
    if described is None:
        described = dict(sfn.describe_execution(executionArn=arn))  # it may have ended since
    if described["status"] not in _ENDED:
        history = read_history(sfn, arn)
        progress = progress_from_history(history)
        job = job_from_execution(described, s3=s3, expires_in=expires_in, progress=progress, job_id=job_id)
        if bucket is not None:  # what GET /jobs/{id} shows of a running job, from the same history
            job["images_so_far"] = signed_images(
                images_from_history(history),
                s3=s3,
                bucket=bucket,
                namespace=submission.caller.namespace,
                expires_in=expires_in,
            )
        job["status_url"] = f"/jobs/{job_id}"
        headers["Location"] = location(job_id)
        if queued and queue is not None:
            job["queue"] = queue.document()
            headers["Retry-After"] = str(queue.seconds)
        return SyncAnswer(202, job, headers, False)
    status, body = sync_response(described)
    if status == 200 and isinstance(body, dict) and body.get("cancelled"):
        error = job_cancelled(job_id)
        return SyncAnswer(error.status, error.body(), headers, False)
    return SyncAnswer(status, body, headers, status == 200)


# -- cancelling ------------------------------------------------------------------------------------


def cancel_job(
    sfn: Any, state_machine_arn: str, caller: Caller, job_id: str, *, s3: Any, bucket: str
) -> dict[str, Any]:
    """Cancel ``caller``'s running job ``job_id``: the ``202`` body (status ``cancelling``).

    404 ``JobNotFound`` when the caller has no such job; 409 ``JobAlreadyCancelled`` when it was
    cancelled before (a second cancel, or two at once: the marker's conditional write tells which was
    first); 409 ``JobFinished`` when it has already ended.
    """
    described = describe_own_execution(sfn, state_machine_arn, caller, job_id)
    name = str(described["name"])
    if is_cancelled(s3, bucket, name):
        raise already_cancelled(job_id)
    if described["status"] != "RUNNING":
        status = str(described["status"]).lower().replace("_", " ")
        raise ApiError(
            409,
            "JobFinished",
            f"job {job_id} has already ended ({status}); there is nothing to cancel. "
            f"GET /jobs/{job_id} has its manifest or error",
        )
    if not mark_cancelled(s3, bucket, name):
        raise already_cancelled(job_id)
    return {"job_id": job_id, "status": "cancelling", "status_url": f"/jobs/{job_id}"}


def already_cancelled(job_id: str) -> ApiError:
    return ApiError(
        409,
        "JobAlreadyCancelled",
        f"job {job_id} was already cancelled; it ends once the images already being made are stored",
    )


# -- listing ---------------------------------------------------------------------------------------

#: Job status in the list -> the statuses its index item can have (a cancelling job's item is
#: RUNNING: its cancellation marker tells it from a running one).
LIST_STATUSES: dict[str, tuple[str, ...]] = {
    "running": (RUNNING,),
    "cancelling": (RUNNING,),
    "succeeded": (SUCCEEDED, PARTIAL),
    "cancelled": (CANCELLED,),
    "failed": (FAILED,),
}
_LISTED = {RUNNING: "running", SUCCEEDED: "succeeded", PARTIAL: "succeeded", CANCELLED: "cancelled"}
DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 100
#: Jobs the index calls running that one list call checks against their executions (DescribeExecution,
#: a bucket of 300 refilled at 15 a second: service-quotas.html): the rest are listed as the index
#: says and checked by a later call, so a caller with many jobs running cannot drain the bucket.
MAX_SETTLE_CHECKS = 20
_TOKEN_VERSION = 2
_TOKEN_KEY = {"pk", "sk", "caller_jobs", "started"}
_NOT_OURS = "is not a token this API issued; send the next_token of the last answer"


def list_query(
    pairs: Iterable[tuple[str, str]],
) -> tuple[str | None, int, dict[str, Any] | None]:
    """``status``, ``limit`` and the decoded ``next_token`` of ``GET /jobs``'s query string; a 400
    naming each field that is wrong (or unknown, or given twice)."""
    values: dict[str, str] = {}
    errors: list[FieldError] = []
    for name, value in pairs:
        if name not in {"status", "limit", "next_token"}:
            errors.append(FieldError(name, "unknown parameter; GET /jobs takes status, limit and next_token"))
        elif name in values:
            errors.append(FieldError(name, "given twice; send each parameter once"))
        values[name] = value
    status = values.get("status") or None
    if status is not None and status not in LIST_STATUSES:
        accepted = ", ".join(LIST_STATUSES)
        errors.append(
            FieldError("status", f"{status[:40]!r} is not a status a list can filter on: {accepted}")
        )
    limit = DEFAULT_LIST_LIMIT
    if "limit" in values:
        raw = values["limit"]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST_LIMIT:
            errors.append(FieldError("limit", f"{raw[:20]!r}: a whole number from 1 to {MAX_LIST_LIMIT}"))
        else:
            limit = int(raw)
    token = None
    if values.get("next_token"):
        try:
            token = decode_token(values["next_token"], status)
        except ValueError as exc:
            errors.append(FieldError("next_token", str(exc)))
    if errors:
        raise ApiError.invalid(errors)
    return status, limit, token


def encode_token(cursor: Mapping[str, Any]) -> str:
    """An opaque ``next_token``: URL-safe base64 of the cursor's JSON."""
    text = json.dumps({"v": _TOKEN_VERSION, **cursor}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_token(token: str, status: str | None) -> dict[str, Any]:
    """The cursor of a ``next_token`` (``{"key": <the last index key read>, "status"}``); ValueError
    (its message for the caller) when it is not one of ours or was issued for another ``status``.
    Whose it is, :func:`list_jobs` checks."""
    try:
        cursor = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError(_NOT_OURS) from None
    key = cursor.get("key") if isinstance(cursor, dict) else None
    if (
        not isinstance(cursor, dict)
        or cursor.get("v") != _TOKEN_VERSION
        or not isinstance(key, dict)
        or set(key) != _TOKEN_KEY
        or not all(isinstance(v, str) for v in key.values())
    ):
        raise ValueError(_NOT_OURS)
    if cursor.get("status") != status:
        raise ValueError(f"was issued for status={cursor.get('status')}; send the same status with it")
    return cursor


def _own_start_key(cursor: Mapping[str, Any] | None, namespace: str) -> dict[str, Any] | None:
    """The index key a cursor starts from, if it is of this caller's own jobs (else a 400)."""
    if cursor is None:
        return None
    key = dict(cursor["key"])
    if key["caller_jobs"] != f"CALLER#{namespace}" or not str(key["pk"]).startswith(f"JOB#{namespace}#"):
        raise ApiError.invalid([FieldError("next_token", _NOT_OURS)])
    return key


def settled_values(described: Mapping[str, Any]) -> dict[str, Any] | None:
    """The job item's final values from its execution (DescribeExecution), or None while it runs: the
    manifest's outcome when it succeeded, ``FAILED`` and the error otherwise (a timeout, an abort, a
    failed step), with when it stopped."""
    status = str(described["status"])
    if status in {"RUNNING", "PENDING_REDRIVE"}:
        return None
    if status == "SUCCEEDED" and described.get("output"):
        values = job_outcome(json.loads(described["output"]))
    else:
        failure = failure_of(status, described.get("error"), described.get("cause"))
        values = job_outcome({"error": failure["error"], "message": failure["message"]})
    values["stopped_at"] = _iso(described.get("stopDate"))
    return values


def _settle(
    item: dict[str, Any], index: ImageIndex, sfn: Any, state_machine_arn: str, caller: Caller
) -> dict[str, Any]:
    """A job the index calls RUNNING, checked against its execution: if that has ended (its last step
    could not write: a timeout, an abort, a lost write), the item as it should be, written back."""
    name = str(item.get("execution_name") or execution_name(caller, str(item["job_id"])))
    try:
        described = sfn.describe_execution(executionArn=execution_arn(state_machine_arn, name))
    except ClientError:  # not found (expired) or throttled: the index's word stands
        return item
    values = settled_values(described)
    if values is None:
        return item
    started = moment_of(item.get("created_at")) or datetime.now(UTC)
    index.update_job(
        caller.namespace, str(item["job_id"]), started=started, values=values, only_while_running=True
    )
    return {**item, **values}


def _listed_job(
    item: Mapping[str, Any], cancelled: set[str], presign: Callable[[str], str]
) -> dict[str, Any]:
    """One job of ``GET /jobs`` from its index item (docs/api.md, "Listing")."""
    job_id = str(item["job_id"])
    status = _LISTED.get(str(item.get("status")), "failed")
    if status == "running" and str(item.get("execution_name")) in cancelled:
        status = "cancelling"
    thumbnail = item.get("thumbnail_key")
    return {
        "job_id": job_id,
        "status": status,
        "started_at": item.get("started_at"),
        "stopped_at": item.get("stopped_at"),
        "status_url": f"/jobs/{job_id}",
        "created_at": item.get("created_at"),
        "prompt": item.get("prompt"),
        "negative_prompt": item.get("negative_prompt"),
        "model": item.get("model"),
        "count": item.get("count"),
        "succeeded": item.get("succeeded"),
        "filtered": item.get("filtered"),
        "failed": item.get("failed"),
        "cost_usd": item.get("cost_usd"),
        "retry_of": item.get("retry_of"),
        "error": {"error": item["error"], "message": item.get("error_message") or ""}
        if item.get("error")
        else None,
        "thumbnail": {"key": str(thumbnail), "url": presign(str(thumbnail))} if thumbnail else None,
    }


def list_jobs(
    index: ImageIndex | None,
    caller: Caller,
    *,
    sfn: Any,
    state_machine_arn: str,
    s3: Any,
    bucket: str,
    presign: Callable[[str], str],
    status: str | None = None,
    limit: int = DEFAULT_LIST_LIMIT,
    cursor: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``GET /jobs``: ``caller``'s jobs, newest first, at most ``limit``, of ``status`` (any when None),
    from the image index (one Query of the caller's own jobs; ``core/image_index.py``).

    Each job carries what a history view shows (prompt, model, count, counts, cost, error, and its
    first stored image with a URL from ``presign``). A job the index still calls RUNNING is checked
    against its execution and settled if that has ended; its cancellation marker tells ``cancelling``
    from ``running``. With a status, the Query reads the items of that status and the RUNNING ones (which
    may have ended), at most ``LIST_MAX_READ`` per call. 503 ``IndexUnavailable`` without an index.
    """
    if index is None:
        raise ApiError(503, "IndexUnavailable", "this deployment has no image index to list jobs from")
    wanted = set(LIST_STATUSES[status]) | {RUNNING} if status else set()
    items, last = index.jobs(
        caller.namespace, statuses=wanted, limit=limit, start=_own_start_key(cursor, caller.namespace)
    )
    checks = 0
    for position, item in enumerate(items):
        if item.get("status") == RUNNING and checks < MAX_SETTLE_CHECKS:
            checks += 1
            items[position] = _settle(item, index, sfn, state_machine_arn, caller)
    running = any(item.get("status") == RUNNING for item in items)
    cancelled = cancelled_names(s3, bucket, execution_name(caller, "")) if running else set()
    jobs = [_listed_job(item, cancelled, presign) for item in items]
    if status:
        jobs = [job for job in jobs if job["status"] == status]
    token = encode_token({"key": last, "status": status}) if last else None
    return {"jobs": jobs, "next_token": token}


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds")
    return str(value) if value else None


# -- retrying --------------------------------------------------------------------------------------


class RetryStarted(NamedTuple):
    """A retry: the new job, and the ``(index, seed)`` of each image it makes again."""

    started: StartedJob
    images: tuple[tuple[int, int], ...]


def ended_job_manifest(described: Mapping[str, Any], *, s3: Any) -> dict[str, Any] | None:
    """The manifest of an ended job: a succeeded execution's output, or the one a request stored
    before it failed because no image was made (its error names where); None when there is none (it
    failed before planning, or was stopped)."""
    if described["status"] == "SUCCEEDED" and described.get("output"):
        manifest = json.loads(described["output"])
        return manifest if isinstance(manifest, dict) else None
    if described["status"] != "FAILED":
        return None
    location = stored_manifest_location(cause_message(described.get("cause")))
    if location is None:
        return None
    try:
        stored = s3.get_object(Bucket=location[0], Key=location[1])
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    manifest = json.loads(stored["Body"].read())
    return manifest if isinstance(manifest, dict) else None


def retry_body(raw: Any) -> bool:
    """``include_filtered`` of a ``POST /jobs/{id}/retry`` body (none, ``{}`` or
    ``{"include_filtered": true|false}``); a 400 naming the field otherwise."""
    if raw is None:
        return False
    if not isinstance(raw, dict):
        raise ApiError.invalid([FieldError("body", 'a JSON object: {"include_filtered": true}, or nothing')])
    errors = [
        FieldError(name, "unknown field; a retry takes include_filtered")
        for name in raw
        if name != "include_filtered"
    ]
    value = raw.get("include_filtered", False)
    if not isinstance(value, bool):
        errors.append(FieldError("include_filtered", "true or false"))
    if errors:
        raise ApiError.invalid(errors)
    return bool(value)


def retry_job(
    sfn: Any,
    state_machine_arn: str,
    caller: Caller,
    job_id: str,
    *,
    s3: Any,
    include_filtered: bool = False,
    ledger: SpendLedger | None = None,
    index: ImageIndex | None = None,
) -> RetryStarted:
    """Start a new job of ``caller`` that makes again the images of job ``job_id`` that failed
    (throttled, timed out, cancelled, ...) and, with ``include_filtered``, those the content filter
    stopped: same request, same indexes and seeds (so the same file names), in the new job's folder;
    its manifest says ``retry_of``.

    404 ``JobNotFound`` when the caller has no such job; 409 ``JobRunning`` while it runs; 409
    ``NothingToRetry`` when it has no such image (or no manifest: it failed before any image was planned);
    with a ``ledger``, 429 ``SpendLimitExceeded`` when the retried images would pass the caller's
    daily ceiling.
    """
    described = describe_own_execution(sfn, state_machine_arn, caller, job_id)
    if described["status"] == "RUNNING":
        raise ApiError(
            409, "JobRunning", f"job {job_id} is still running; retry it once it has ended (or cancel it)"
        )
    manifest = ended_job_manifest(described, s3=s3)
    if manifest is None:
        raise ApiError(
            409,
            "NothingToRetry",
            f"job {job_id} made no manifest (it ended before its images were planned); send the request again",
        )
    retried = {"FAILED", "FILTERED"} if include_filtered else {"FAILED"}
    images = tuple(
        (int(image["index"]), int(image["seed"]))
        for image in manifest.get("images", [])
        if image.get("status") in retried
    )
    if not images:
        filtered = sum(image.get("status") == "FILTERED" for image in manifest.get("images", []))
        hint = (
            f'; {filtered} filtered, retried with {{"include_filtered": true}}'
            if filtered and not include_filtered
            else ""
        )
        raise ApiError(409, "NothingToRetry", f"job {job_id} has no failed image to retry{hint}")
    original = read_execution_input(json.loads(described["input"]))
    request = {k: v for k, v in dict(original.request).items() if k != "idempotency_key"}
    submission = ExecutionInput(request, caller, RetryOf(job_id, images))
    started = start_job(sfn, state_machine_arn, submission, None, ledger=ledger, index=index)
    return RetryStarted(started, images)


def retry_accepted(retry: RetryStarted, job_id: str) -> dict[str, Any]:
    """The ``202`` body of ``POST /jobs/{id}/retry``."""
    new_id = retry.started.job_id
    return {
        "job_id": new_id,
        "status": retry.started.status,
        "status_url": f"/jobs/{new_id}",
        "retry_of": job_id,
        "images": [{"index": index, "seed": seed} for index, seed in retry.images],
    }
