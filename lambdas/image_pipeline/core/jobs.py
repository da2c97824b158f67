"""The HTTP contract of the API, as plain functions shared by the Lambda and the local server.

* Submissions: a JSON body (or query string) becomes a validated request before any execution starts;
  every problem is an :class:`ApiError` with the HTTP status, a named error and the fields to change.
* Starting: :func:`start_job` starts a Standard ("jobs") execution of a caller named by the idempotency
  key and answers a retry with the existing job (409 for another request of the same caller);
  :func:`sync_response` turns an ended execution (a synchronous route's job) into the HTTP answer.
* Jobs: a job id is the execution name of the Standard workflow without the caller's namespace
  (``<namespace>-<job id>``, :func:`image_pipeline.core.tenancy.execution_name`), so a caller reaches
  only its own jobs; :func:`describe_job` answers ``GET /jobs/{id}`` from DescribeExecution (and, while
  it runs, the progress counted from its history by :func:`progress_from_history` and the images stored
  so far, ``images_so_far``, from the same history: ``core/job_history.py``), with presigned URLs
  re-issued on every call. Another caller's job is 404 exactly like one that does not exist.
* Failures: :data:`WORKFLOW_ERROR_HTTP_STATUS` maps the workflow's named errors to HTTP statuses.

The Step Functions client is a parameter: the deployed Lambda passes its boto3 client, the local server
the offline engine's (moto) client.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from image_pipeline.contract.errors import FieldError, InvalidRequest, SpendLimitExceeded, cause_message
from image_pipeline.contract.request import ImageRequest, request_from_query
from image_pipeline.core.cancellation import is_cancelled
from image_pipeline.core.execution_input import ExecutionInput, read_execution_input
from image_pipeline.core.image_index import ImageIndex
from image_pipeline.core.job_history import (
    MAX_HISTORY_PAGES,
    images_from_history,
    read_history,
    signed_images,
)
from image_pipeline.core.manifest import with_presigned_urls
from image_pipeline.core.planning import check_request
from image_pipeline.core.refine import check_stored_images
from image_pipeline.core.refine import is_not_found as source_not_found
from image_pipeline.core.settings import Settings
from image_pipeline.core.spend import Hold, SpendLedger, estimate_usd
from image_pipeline.core.tenancy import MAX_JOB_ID_LENGTH, Caller, execution_name
from image_pipeline.core.webhooks import job_webhooks
from image_pipeline.models.base import IMAGE_FIELDS
from image_pipeline.models.facts import standing, today_utc
from image_pipeline.models.prices import model_price_document
from image_pipeline.models.registry import list_adapters

#: Largest request body accepted (a request is a prompt and a few numbers; the input limit of an
#: execution is 256 KiB).
MAX_BODY_BYTES = 64 * 1024
#: A job id is a UUID or a client's idempotency key; its execution is named ``<namespace>-<job id>``.
JOB_ID = re.compile(rf"^[A-Za-z0-9_-]{{1,{MAX_JOB_ID_LENGTH}}}$")
#: An execution name of ours (Step Functions allows more characters; we name executions with these).
EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
IDEMPOTENCY_HEADER = "Idempotency-Key"
_STATE_MACHINE_ARN = re.compile(r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$")

#: Execution status -> job status.
JOB_STATUS: dict[str, str] = {
    "PENDING_REDRIVE": "queued",
    "RUNNING": "running",
    "SUCCEEDED": "succeeded",
    "FAILED": "failed",
    "TIMED_OUT": "failed",
    "ABORTED": "failed",
}
#: Workflow error name -> HTTP status. A TIMED_OUT execution is 504; any other failure is 502.
WORKFLOW_ERROR_HTTP_STATUS: dict[str, int] = {
    "InvalidRequest": 400,
    "AllImagesFiltered": 400,
    "ImagesThrottled": 429,
    "SpendLimitExceeded": 429,
}
TIMED_OUT_STATUS = 504
OTHER_FAILURE_STATUS = 502
#: Error names of executions that ended without an error of their own.
_STATUS_ERROR = {"TIMED_OUT": "ExecutionTimedOut", "ABORTED": "ExecutionAborted"}


class ApiError(Exception):
    """An HTTP error answer: status, a named error, a message, and the fields to change."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        details: Iterable[FieldError] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = list(details)
        #: Headers of the answer (``Retry-After`` of a 429).
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error", "message"}`` plus ``details`` for invalid requests."""
        body: dict[str, Any] = {"error": self.error, "message": self.message}
        if self.details:
            body["details"] = [{"field": d.field, "message": d.message} for d in self.details]
        return body

    @classmethod
    def invalid(cls, errors: list[FieldError], status: int = 400) -> ApiError:
        return cls(status, "InvalidRequest", str(InvalidRequest(errors)), errors)


# -- submissions ---------------------------------------------------------------------------------


def body_too_large(size: int | None, max_bytes: int = MAX_BODY_BYTES) -> ApiError:
    """413: the body is over the limit (``size`` None: not known, the body was not read to its end)."""
    told = f"{size} bytes" if size is not None else "too large"
    return ApiError.invalid([FieldError("body", f"{told}; at most {max_bytes} bytes")], status=413)


def parse_body(body: bytes, content_type: str | None, *, max_bytes: int = MAX_BODY_BYTES) -> Any:
    """The JSON value of a request body; 413 when too large, 415 when not JSON, 400 when unparsable."""
    if len(body) > max_bytes:
        raise body_too_large(len(body), max_bytes)
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError.invalid(
            [FieldError("Content-Type", f"{media_type or 'none'}; send application/json")], status=415
        )
    try:
        return json.loads(body, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise _given_twice([exc.key]) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError.invalid([FieldError("body", f"is not valid JSON ({exc})")]) from None
    except RecursionError:
        raise ApiError.invalid([FieldError("body", "is nested too deeply")]) from None


def _given_twice(names: list[str]) -> ApiError:
    """400: a request named these fields more than once (which value was meant is unknown)."""
    return ApiError.invalid([FieldError(name, "given twice; send each field once") for name in names])


def _repeated(pairs: list[tuple[str, Any]]) -> list[str]:
    """The names that occur more than once among ``pairs``, in order of their first repeat."""
    seen: set[str] = set()
    repeated: list[str] = []
    for name, _ in pairs:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    return repeated


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's fields, refusing a name given twice (``json`` would keep the last one silently)."""
    if repeated := _repeated(pairs):
        raise _DuplicateKey(repeated[0])
    return dict(pairs)


def query_request(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The request of ``GET /images`` from its query string's (name, value) pairs; a name given
    twice is a 400, not the last value kept silently. Number fields are read as the JSON numbers their
    text spells (:func:`~image_pipeline.contract.request.request_from_query`): ``count=four`` is then
    refused as ``{"count": "four"}`` is."""
    listed = list(pairs)
    if repeated := _repeated(listed):
        raise _given_twice(repeated)
    return request_from_query(dict(listed))


def validate_submission(
    raw: Any,
    *,
    settings: Settings,
    idempotency_header: str | None = None,
    caller: Caller | None = None,
    s3: Any = None,
) -> tuple[dict[str, Any], str | None]:
    """Check a request as the workflow's first step does (:func:`check_request`, and for an operation
    on a stored image :func:`~image_pipeline.core.refine.check_stored_images` as ``caller``, reading
    ``s3``), without planning or starting anything.

    Returns the execution input (the request's fields as given, typed, with ``idempotency_key`` set
    to the key) and the idempotency key (``Idempotency-Key`` header or the body's
    ``idempotency_key``). Raises :class:`ApiError`: 400, or 404 when a stored image it names is not
    the caller's or not there (the same answer for both).
    """
    header_key = idempotency_header.strip() if idempotency_header is not None else None
    if header_key is not None and not IDEMPOTENCY_KEY.match(header_key):
        raise ApiError.invalid([FieldError(IDEMPOTENCY_HEADER, "1 to 64 letters, digits, '_' or '-'")])
    try:
        checked = check_request(raw, settings)  # the model's own limits too
        request = checked.request
        if any(getattr(request, field) is not None for field in IMAGE_FIELDS):
            if caller is None or s3 is None:
                raise ValueError("a request naming stored images is checked as its caller, with S3")
            check_stored_images(request, checked.adapter, caller=caller, s3=s3, bucket=settings.images_bucket)
    except InvalidRequest as exc:
        raise ApiError.invalid(exc.errors, status=404 if source_not_found(exc) else 400) from None
    body_key = request.idempotency_key
    if header_key and body_key and header_key != body_key:
        raise ApiError.invalid(
            [FieldError("idempotency_key", f"differs from the {IDEMPOTENCY_HEADER} header; send one")]
        )
    execution_input = request.model_dump(mode="json", exclude_unset=True)
    key = header_key or body_key
    if key:  # one input whether the key came in the header or the body: a retry compares equal
        execution_input["idempotency_key"] = key
    return execution_input, key


def same_input(a: Any, b: Any) -> bool:
    """Whether two execution inputs (JSON text or values) are the same request."""

    def load(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str | bytes) else value

    try:
        return bool(load(a) == load(b))
    except ValueError:
        return False


def idempotency_conflict(job_id: str) -> ApiError:
    return ApiError(
        409,
        "IdempotencyKeyReused",
        f"job {job_id} was started with a different request; use a new {IDEMPOTENCY_HEADER} "
        "for a different request, or resend the original request to get that job",
    )


def job_accepted(job_id: str, status: str = "running") -> dict[str, Any]:
    """The ``202`` body of ``POST /jobs``."""
    return {"job_id": job_id, "status": status, "status_url": f"/jobs/{job_id}"}


# -- starting executions -------------------------------------------------------------------------


def execution_document(execution_input: Mapping[str, Any]) -> str:
    """The execution input as JSON text, always written the same way: Step Functions answers a repeated
    StartExecution of a running execution with that execution only when name *and* input text match."""
    return json.dumps(execution_input, sort_keys=True, separators=(",", ":"))


class StartedJob(NamedTuple):
    """What :func:`start_job` did: the job id, whether this call started it, and the job's status."""

    job_id: str
    created: bool
    status: str


def start_job(
    sfn: Any,
    state_machine_arn: str,
    submission: ExecutionInput,
    key: str | None,
    *,
    ledger: SpendLedger | None = None,
    now: datetime | None = None,
    index: ImageIndex | None = None,
) -> StartedJob:
    """Start a job of ``submission.caller``: a Standard execution named ``<namespace>-<key>`` (the
    idempotency key) or ``<namespace>-<new UUID>``, whose input is the envelope
    (:meth:`ExecutionInput.to_document`: the request, the caller and, for a retry, what it retries).

    With a ``ledger`` (``core/spend.py``), the job's estimated cost is reserved on the caller's daily
    ledger first, atomically: a request that would take the caller past its ceiling is a 429
    ``SpendLimitExceeded`` (:func:`spend_refused`) and nothing starts; a reservation whose job did not
    start here (refused, or an existing job answered the key) is given back.

    A retry of a running job is answered by Step Functions itself (same name and input: the same
    execution). Once that execution has closed, StartExecution refuses the name
    (``ExecutionAlreadyExists``): then the stored input decides. The same request gets the existing
    job (``created`` false, its current status); another request is a 409 ``IdempotencyKeyReused``.
    The name carries the caller's namespace, so two callers using one key never meet. Other refusals
    become :func:`start_refused` errors. With the image ``index``, the new job's item is written at
    once (``RUNNING``), so ``GET /jobs`` lists it before its first step runs.
    """
    job_id = key or str(uuid.uuid4())
    name = execution_name(submission.caller, job_id)
    now = now or datetime.now(UTC)
    arn = execution_arn(state_machine_arn, name)
    try:
        hold = _reserve(ledger, submission, name, now) if ledger is not None else None
    except ApiError:
        # A replay of a job that exists is answered with that job, limit or not; a new one is refused.
        described = _described(sfn, arn) if key else None
        if described is None:
            raise
        return _existing_job(described, submission.to_document(), job_id)
    if hold is not None:
        submission = replace(submission, spend=hold.to_input())
    document = submission.to_document()
    try:
        answer = sfn.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=execution_document(document)
        )
        if index is not None:  # a failed write is logged and counted; ValidateRequest writes it too
            index.job_started(
                submission.caller.namespace,
                job_id,
                started=answer.get("startDate") or datetime.now(UTC),
                execution_name=name,
                request=submission.request,
                retry_of=submission.retry.job_id if submission.retry else None,
            )
        return StartedJob(job_id, True, "running")
    except ClientError as exc:
        if ledger is not None and hold is not None and hold.created:
            ledger.release(hold)  # nothing was started by this call
        if _error_code(exc) != "ExecutionAlreadyExists":
            raise start_refused(exc) from exc
    return _existing_job(sfn.describe_execution(executionArn=arn), document, job_id)


def _described(sfn: Any, arn: str) -> dict[str, Any] | None:
    """DescribeExecution of ``arn``, or None when there is no such execution."""
    try:
        return dict(sfn.describe_execution(executionArn=arn))
    except ClientError as exc:
        if _error_code(exc) == "ExecutionDoesNotExist":
            return None
        raise start_refused(exc) from exc


def _existing_job(described: Mapping[str, Any], document: Mapping[str, Any], job_id: str) -> StartedJob:
    """The job an idempotency key already names: the same request is that job, another is a 409."""
    if not same_input(_without_spend(described.get("input")), _without_spend(document)):
        raise idempotency_conflict(job_id)
    return StartedJob(job_id, False, JOB_STATUS.get(str(described["status"]), "running"))


def _without_spend(value: Any) -> Any:
    """An execution input without its ``spend`` (the day a replay reserves on may differ)."""
    loaded = json.loads(value) if isinstance(value, str | bytes) else value
    if isinstance(loaded, Mapping):
        return {k: v for k, v in loaded.items() if k != "spend"}
    return loaded


#: Images of a request that does not say ``count``.
DEFAULT_COUNT = int(ImageRequest.model_fields["count"].default)


def _reserve(ledger: SpendLedger, submission: ExecutionInput, name: str, now: datetime) -> Hold | None:
    """Reserve the estimate of ``submission`` (its model, quality and images) for execution ``name``;
    429 when it would pass the caller's ceiling."""
    request = submission.request if isinstance(submission.request, Mapping) else {}
    count = len(submission.retry.images) if submission.retry else int(request.get("count") or DEFAULT_COUNT)
    model = str(request.get("model") or ledger.default_model)
    estimate = estimate_usd(model, request.get("quality"), count)
    try:
        return ledger.reserve(submission.caller.namespace, name, estimate, now=now)
    except SpendLimitExceeded as exc:
        raise spend_refused(exc, now) from None
    except (ClientError, BotoCoreError) as exc:  # fail closed: a ceiling that cannot be read holds
        raise ApiError(
            503, "SpendLedgerUnavailable", "the spend ledger could not be read; try again"
        ) from exc


def spend_refused(exc: SpendLimitExceeded, now: datetime) -> ApiError:
    """429 ``SpendLimitExceeded``: the message says what is left and when the limit resets, and
    ``Retry-After`` (seconds, RFC 9110) is the time until then (the next midnight, UTC)."""
    seconds = max(1, math.ceil((exc.resets_at - now).total_seconds())) if exc.resets_at else 3600
    return ApiError(429, "SpendLimitExceeded", str(exc), headers={"Retry-After": str(seconds)})


def sync_response(result: Mapping[str, Any]) -> tuple[int, Any]:
    """The HTTP status and body of an ended execution (a DescribeExecution result): 200 and the output
    (the manifest) when it SUCCEEDED; otherwise the failure's status
    (:data:`WORKFLOW_ERROR_HTTP_STATUS` by error name, 502 for any other failure, 504 when TIMED_OUT)
    and ``{"error", "message"}``, the message taken from the cause."""
    status = str(result.get("status") or "")
    output = result.get("output")
    if status == "SUCCEEDED" and output:
        return 200, json.loads(output) if isinstance(output, str | bytes) else output
    if status == "SUCCEEDED":  # a workflow that returned nothing did not do its job
        return OTHER_FAILURE_STATUS, {
            "error": "ExecutionFailed",
            "message": "the workflow returned no output",
        }
    error = failure_error(status, result.get("error"), result.get("cause"))
    return error.status, error.body()


#: Step Functions error codes of a StartExecution that did not start anything.
_BUSY = frozenset({"ThrottlingException", "Throttling", "ExecutionLimitExceeded", "TooManyRequestsException"})


def start_refused(exc: ClientError) -> ApiError:
    """The answer when Step Functions refused or failed a call: 429 when it is busy (try again), 400 for
    an input it refuses, 503 when it is unavailable, 502 otherwise (a deployment error, such as a
    missing permission; the message names only the code)."""
    code = _error_code(exc)
    if code in _BUSY:
        return ApiError(429, "TooManyRequests", "the workflow is busy; try again later")
    if code in {"InvalidExecutionInput", "InvalidName"}:
        return ApiError(400, "InvalidRequest", f"the workflow refused the request ({code})")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    if status >= 500:
        return ApiError(503, "ServiceUnavailable", "the workflow service is unavailable; try again")
    return ApiError(
        OTHER_FAILURE_STATUS, "ExecutionNotStarted", f"the workflow could not be started ({code})"
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# -- jobs ----------------------------------------------------------------------------------------


def check_job_id(job_id: str) -> str:
    """The job id, or a 400 naming the field ``id`` when it cannot be a job id (a UUID or an
    idempotency key: letters, digits, ``_`` and ``-``)."""
    if not JOB_ID.match(job_id):
        raise ApiError.invalid(
            [
                FieldError(
                    "id",
                    f"{job_id[:100]!r} is not a job id: 1 to {MAX_JOB_ID_LENGTH} letters, digits, '_' or '-'",
                )
            ]
        )
    return job_id


def job_not_found(job_id: str) -> ApiError:
    return ApiError(404, "JobNotFound", f"no job with id {job_id[:100]!r}")


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN of execution ``name`` of a state machine (a 404 ``JobNotFound`` when ``name`` cannot be
    an execution name of ours)."""
    if not _STATE_MACHINE_ARN.match(state_machine_arn):
        raise ValueError(f"not a state machine ARN: {state_machine_arn!r}")
    if not EXECUTION_NAME.match(name):
        raise job_not_found(name)
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + name


def started_by(described: Mapping[str, Any]) -> Caller | None:
    """The caller an execution was started for, read from its stored input (None when unreadable)."""
    try:
        return read_execution_input(json.loads(described.get("input") or "null")).caller
    except (ValueError, KeyError, TypeError):
        return None


def describe_own_execution(sfn: Any, state_machine_arn: str, caller: Caller, job_id: str) -> dict[str, Any]:
    """DescribeExecution of ``caller``'s job ``job_id``; a 404 ``JobNotFound`` when there is none.

    The execution is named ``<namespace>-<job id>``, so a job id of another caller names another
    execution (usually none). Its stored input must also name ``caller``: an execution started under
    that name by anyone else (an operator at the console, or the 1 in 2^48 chance of two callers
    sharing a namespace) is another's, and is not found either, with the very same answer.
    """
    arn = execution_arn(state_machine_arn, execution_name(caller, check_job_id(job_id)))
    try:
        described = sfn.describe_execution(executionArn=arn)
    except ClientError as exc:
        if _error_code(exc) in {"ExecutionDoesNotExist", "InvalidArn"}:
            raise job_not_found(job_id) from None
        raise
    if started_by(described) != caller:
        raise job_not_found(job_id)
    return dict(described)


def failure_of(status: str, error: str | None, cause: str | None) -> dict[str, str]:
    """``{"error", "message"}`` of an execution that did not succeed."""
    name = error or _STATUS_ERROR.get(status, "ExecutionFailed")
    message = cause_message(cause)
    if not message:
        message = {
            "TIMED_OUT": "the workflow did not finish in time",
            "ABORTED": "the workflow was stopped",
        }.get(status, "the workflow failed")
    return {"error": name, "message": message}


def http_status_for_failure(status: str, error: str | None) -> int:
    """The HTTP status of an execution that did not succeed (never 200)."""
    if status == "TIMED_OUT":
        return TIMED_OUT_STATUS
    return WORKFLOW_ERROR_HTTP_STATUS.get(error or "", OTHER_FAILURE_STATUS)


def failure_error(status: str, error: str | None, cause: str | None) -> ApiError:
    """The :class:`ApiError` that answers for a failed synchronous execution."""
    failure = failure_of(status, error, cause)
    return ApiError(http_status_for_failure(status, error), failure["error"], failure["message"])


def progress_from_history(events: Iterable[Mapping[str, Any]]) -> dict[str, int | None]:
    """Images finished so far from an execution's history events: the Map's iterations that
    succeeded (``done``) and failed (``failed``) of its ``total`` (None until planned)."""
    progress: dict[str, int | None] = {"total": None, "done": 0, "failed": 0}
    for event in events:
        kind = event.get("type")
        if kind == "MapStateStarted":
            progress["total"] = event.get("mapStateStartedEventDetails", {}).get("length")
        elif kind == "MapIterationSucceeded":
            progress["done"] = (progress["done"] or 0) + 1
        elif kind == "MapIterationFailed":
            progress["failed"] = (progress["failed"] or 0) + 1
    return progress


def execution_progress(sfn: Any, arn: str, *, max_pages: int = MAX_HISTORY_PAGES) -> dict[str, int | None]:
    """:func:`progress_from_history` of an execution, from at most ``max_pages`` pages of its history."""
    return progress_from_history(read_history(sfn, arn, max_pages=max_pages))


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value) if value else None


def job_from_execution(
    described: Mapping[str, Any],
    *,
    s3: Any,
    expires_in: int,
    progress: Mapping[str, Any] | None = None,
    job_id: str | None = None,
    cancel_requested: bool = False,
) -> dict[str, Any]:
    """The ``GET /jobs/{id}`` document of a DescribeExecution result (``job_id``: the id the caller
    knows, the execution name without its namespace; default the execution name).

    A succeeded job carries its manifest with presigned URLs issued now; a failed one its error. A
    running job whose progress shows no plan yet (``total`` None) is ``queued``; one that was asked to
    stop (``cancel_requested``, ``DELETE /jobs/{id}``) is ``cancelling`` until the images already being
    made are stored, and then ``cancelled``, with its manifest (``"cancelled": true``).
    """
    status = str(described["status"])
    job: dict[str, Any] = {
        "job_id": job_id or described["name"],
        "status": JOB_STATUS.get(status, "running"),
        "started_at": _iso(described.get("startDate")),
        "stopped_at": _iso(described.get("stopDate")),
    }
    if progress is not None:
        job["progress"] = {k: progress.get(k) for k in ("total", "done", "failed")}
        if job["status"] == "running" and progress.get("total") is None:
            job["status"] = "queued"
    if job["status"] in {"queued", "running"} and cancel_requested:
        job["status"] = "cancelling"
    if status == "SUCCEEDED" and described.get("output"):
        manifest = json.loads(described["output"])
        if manifest.get("cancelled"):
            job["status"] = "cancelled"
        job["manifest"] = with_presigned_urls(manifest, s3=s3, expires_in=expires_in)
    elif job["status"] == "failed":
        job["error"] = failure_of(status, described.get("error"), described.get("cause"))
    return job


def describe_job(
    sfn: Any,
    state_machine_arn: str,
    job_id: str,
    *,
    caller: Caller,
    s3: Any,
    expires_in: int,
    bucket: str | None = None,
) -> dict[str, Any]:
    """The ``GET /jobs/{id}`` document of ``caller``'s job ``job_id`` of the jobs state machine: 404
    ``JobNotFound`` when the caller has no such job (:func:`describe_own_execution`); its progress
    while it runs, and whether it was cancelled (the marker in ``bucket``); see
    :func:`job_from_execution`."""
    described = describe_own_execution(sfn, state_machine_arn, caller, job_id)
    arn = str(described["executionArn"])
    running = described["status"] == "RUNNING"
    history = read_history(sfn, arn) if running else []
    progress = progress_from_history(history) if running else None
    cancel_requested = running and bucket is not None and is_cancelled(s3, bucket, str(described["name"]))
    job = job_from_execution(
        described,
        s3=s3,
        expires_in=expires_in,
        progress=progress,
        job_id=job_id,
        cancel_requested=cancel_requested,
    )
    if running and bucket is not None:  # what is stored so far, from the same history (no extra call)
        images = images_from_history(history)
        job["images_so_far"] = signed_images(
            images, s3=s3, bucket=bucket, namespace=caller.namespace, expires_in=expires_in
        )
    if bucket is not None:  # each webhook delivery's attempts and last status (core/webhooks.py)
        deliveries = job_webhooks(s3, bucket, str(described["name"]))
        if deliveries:
            job["webhooks"] = deliveries
    return job


# -- models --------------------------------------------------------------------------------------


def model_catalog(settings: Settings, *, today: date | None = None) -> dict[str, Any]:
    """The ``GET /models`` body: every adapter's description, whether this deployment allows it
    (``enabled``), its lifecycle on ``today`` (default: today in UTC) and whether it can serve a request
    here (``available``: allowed, not past its end of life, offered in the deployment's Region), with
    the reason when it cannot or a warning when it is legacy (``lifecycle_note``), from the model facts;
    and its price per image (``price``, and ``price_premium`` where premium quality is priced apart) from
    the price table (``image_pipeline.models.prices``), with its unit, status, source and date."""
    allowed = settings.allowed_models
    day = today or today_utc()
    models = []
    for adapter in list_adapters():
        enabled = not allowed or adapter.registry_id in allowed
        judged = standing(adapter.model_id, day=day, region=settings.region or None, among=allowed or None)
        models.append(
            {
                **adapter.describe(),
                "lifecycle": judged.status.lower(),
                "lifecycle_note": judged.problem or judged.warning,
                "invoke_id": judged.offer.invoke_id if judged.offer else None,
                "enabled": enabled,
                "available": enabled and judged.usable,
                "default": adapter.registry_id == settings.default_model,
                "price": model_price_document(adapter.registry_id),
                **_premium_price(adapter.registry_id),
            }
        )
    return {
        "default_model": settings.default_model,
        "region": settings.region or None,
        "as_of": day.isoformat(),
        "models": models,
    }


def _premium_price(registry_id: str) -> dict[str, Any]:
    premium = model_price_document(registry_id, "premium")
    return {"price_premium": premium} if premium and premium["entry"] != registry_id else {}
