"""The HTTP API behind API Gateway (Lambda proxy integration): every route of ``docs/api.md``.

==========================  ==============================================================================
``POST /images``            validate, start a job and wait for it (``Prefer: wait=N``): the manifest, or
                            ``202`` + ``Location`` when it is not done in time
``GET /images?prompt=...``  the same, with every request field as a query parameter
``POST /jobs``              validate, ``StartExecution`` (Standard): ``202`` + ``Location``; idempotent
``GET /jobs``               the caller's jobs, newest first (``status``, ``limit``, ``next_token``)
``GET /jobs/{id}``          the job: status, progress, manifest with fresh presigned URLs, or error
``GET /jobs/{id}/events``   its images as they are stored, then its end (Server-Sent Events, one batch)
``DELETE /jobs/{id}``       cancel a running job (``202``; it ends with a complete manifest)
``POST /jobs/{id}/retry``   a new job of the images that failed (``{"include_filtered": true}``)
``GET /images/search``     the caller's images by prompt words, model and time (the image index)
``GET /models``             the models this deployment offers
==========================  ==============================================================================

Every route answers for one caller: the identity API Gateway authenticated and put in the request
context (the API key's id, the IAM principal or the Cognito user: :func:`current_caller`), never
anything in the body or a header. Executions are named ``<namespace>-<id>`` and started with the
envelope ``{"request", "caller"}``; ``GET /jobs/{id}`` reaches only the caller's own jobs (another's is
404, like a missing one), and images are stored under the caller's namespace.

API Gateway has already checked the generated JSON schema (and that ``GET /images`` has a ``prompt``).
This function checks what a schema cannot say (the chosen model's sizes, ratios and prompt length, options
the model does not take, the deployment's ``MAX_IMAGES_PER_REQUEST``) with the same
:mod:`image_pipeline.core.jobs` functions as the local server, and answers 400/413/415 *before* any
Step Functions call: an invalid request never starts an execution.

The synchronous routes start a job of the Standard workflow and poll it for as long as ``Prefer: wait``
asks, at most what this function's remaining time allows (``SYNC_MAX_WAIT_SECONDS``, and the context's
remaining time less ``core/time_budget.py``'s margin): a run that takes longer is a 202 with its job,
never a 504 that loses it (:mod:`image_pipeline.core.job_control`); behind a model's queue that would
outlast the wait, the 202 comes at once (``queue``, ``Retry-After``) and the OpenAI route answers 429
without starting anything (:func:`_queue_estimate`: one GetItem of the queue's counter). Logs carry the API Gateway request
id as correlation id; never headers (API keys), and the prompt only at DEBUG.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable
from functools import cache
from typing import Any, ClassVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from image_pipeline.contract.errors import FieldError, InvalidRequest
from image_pipeline.core import clients, time_budget
from image_pipeline.core.admission import QueueEstimate
from image_pipeline.core.admission_runtime import read_queue_estimate
from image_pipeline.core.execution_input import ExecutionInput
from image_pipeline.core.image_index import search_images
from image_pipeline.core.job_control import (
    PREFER_HEADER,
    PREFERENCE_APPLIED_HEADER,
    SyncAnswer,
    WaitPreference,
    cancel_job,
    list_jobs,
    list_query,
    retry_accepted,
    retry_body,
    retry_job,
    run_and_wait,
    wait_preference,
)
from image_pipeline.core.job_events import (
    EVENT_HEADERS,
    EVENT_STREAM,
    LAST_EVENT_ID_HEADER,
    event_batch,
    job_events,
    last_event_id,
)
from image_pipeline.core.jobs import (
    IDEMPOTENCY_HEADER,
    MAX_BODY_BYTES,
    ApiError,
    describe_job,
    job_accepted,
    model_catalog,
    parse_body,
    query_request,
    start_job,
    validate_submission,
)
from image_pipeline.core.lasting_links import LinkMinter, deployment_secret, link_settings
from image_pipeline.core.manifest import with_presigned_urls
from image_pipeline.core.openai_images import (
    ROUTE as OPENAI_IMAGES_ROUTE,
)
from image_pipeline.core.openai_images import (
    OpenAIError,
    check_generation,
    generations_answer,
    openai_error,
    refuse_behind_queue,
)
from image_pipeline.core.settings import get_settings, model_from_environ
from image_pipeline.core.tenancy import Caller, caller_from_request_context

logger = Logger()
_STATE_MACHINE_ARN = r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$"


class HttpApiEnvironment(BaseModel):
    """This handler's own environment; IMAGES_BUCKET, PRESIGN_EXPIRY_SECONDS, ALLOWED_MODELS,
    DEFAULT_MODEL and MAX_IMAGES_PER_REQUEST are the shared :class:`~image_pipeline.core.settings.Settings`.
    CORS_ALLOW_ORIGINS (comma-separated, ``*`` for any; unset: no CORS headers) is read at import."""

    #: Field -> the environment variable it is read from.
    ENVIRONMENT: ClassVar[dict[str, str]] = {
        "jobs_state_machine_arn": "JOBS_STATE_MACHINE_ARN",
        "sync_max_wait_seconds": "SYNC_MAX_WAIT_SECONDS",
    }

    jobs_state_machine_arn: str = Field(pattern=_STATE_MACHINE_ARN)
    #: The longest a synchronous route waits for its job (``Prefer: wait`` asks for less): API Gateway's
    #: integration timeout less the margin of ``core/time_budget.py``; the context's remaining time may
    #: shorten it further.
    sync_max_wait_seconds: float = Field(
        default=time_budget.longest_sync_wait(time_budget.API_GATEWAY_INTEGRATION_SECONDS), ge=0, le=900
    )


@cache
def environment() -> HttpApiEnvironment:
    """Read once per container; a bad value fails every request loudly (a deployment error)."""
    return model_from_environ(HttpApiEnvironment, HttpApiEnvironment.ENVIRONMENT, None, "handler")


def cors_config(origins: str | None) -> CORSConfig | None:
    """CORS of the answers for comma-separated ``origins`` (the first one, ``*``: any); none: no CORS."""
    allowed = [o.strip() for o in (origins or "").split(",") if o.strip()]
    if not allowed:
        return None
    return CORSConfig(
        allow_origin=allowed[0],
        extra_origins=allowed[1:],
        allow_headers=["Content-Type", "X-Api-Key", IDEMPOTENCY_HEADER, PREFER_HEADER, LAST_EVENT_ID_HEADER],
        expose_headers=["Location", PREFERENCE_APPLIED_HEADER, "Retry-After"],
    )


CORS = cors_config(os.environ.get("CORS_ALLOW_ORIGINS"))
#: debug=False: Powertools' debug mode (POWERTOOLS_DEV) would print whole events, API key included.
app = APIGatewayRestResolver(cors=CORS, debug=False)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    extra = dict(headers or {})
    if CORS is not None:
        extra["Vary"] = "Origin"  # Powertools echoes an allowed Origin: one cached answer per Origin
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body),
        headers=extra or None,
    )


@app.exception_handler(ApiError)
def api_error(exc: ApiError) -> Response:
    # Field names only: a field's message may quote the request.
    fields = [d.field for d in exc.details]
    logger.info(
        "request answered with an error", extra={"status": exc.status, "error": exc.error, "fields": fields}
    )
    return _json(exc.status, exc.body(), exc.headers)


@app.not_found
def not_found(_: Exception) -> Response:
    return _json(404, {"error": "NotFound", "message": "no such route; see GET /models and docs/api.md"})


# -- submissions ---------------------------------------------------------------------------------


def _body_json() -> Any:
    """The request body as JSON: 413 over :data:`MAX_BODY_BYTES`, 415 when not JSON, 400 unparsable."""
    event = app.current_event
    text = event.body or ""
    if event.is_base64_encoded:
        try:
            body = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError.invalid([FieldError("body", "is not valid base64")]) from None
    else:
        body = text.encode("utf-8")
    return parse_body(body, event.headers.get("Content-Type"), max_bytes=MAX_BODY_BYTES)


def current_caller() -> Caller:
    """The caller of this request, from what API Gateway authenticated (``requestContext``): the
    Cognito user, the IAM principal or the API key's id. Every route of this API requires one of
    them, so a request naming nobody never got past API Gateway: it is refused (401) rather than
    served as somebody."""
    caller = caller_from_request_context(app.current_event.raw_event.get("requestContext") or {})
    if caller is None:
        raise ApiError(401, "Unauthorized", "the request carries no identity; send your x-api-key")
    logger.append_keys(caller_namespace=caller.namespace)  # the hash, never the identity itself
    return caller


def _request_id() -> str:
    """API Gateway's request id: the name of a synchronous execution (and so its S3 folder)."""
    return str(app.current_event.request_context.request_id)


def _log_submission(message: str, execution_input: dict[str, Any], **extra: Any) -> None:
    fields = {k: v for k, v in execution_input.items() if k not in {"prompt", "negative_prompt"}}
    logger.info(message, extra={**extra, "request": fields})
    logger.debug("prompt", extra={"prompt": execution_input.get("prompt")})


def _prefer() -> list[str]:
    """Every value of the request's ``Prefer`` headers."""
    event = app.current_event
    values = [
        value
        for name, listed in (event.multi_value_headers or {}).items()
        if name.lower() == PREFER_HEADER.lower()
        for value in listed or []
    ]
    single = event.headers.get(PREFER_HEADER)
    return values or ([single] if single else [])


def _longest_wait() -> float:
    """How long a synchronous route may wait: ``SYNC_MAX_WAIT_SECONDS``, and no longer than this
    invocation's remaining time allows (less the margin for the last poll and the answer)."""
    remaining = app.lambda_context.get_remaining_time_in_millis() / 1000
    return min(environment().sync_max_wait_seconds, time_budget.longest_sync_wait(remaining))


def _queue_estimate(execution_input: dict[str, Any]) -> QueueEstimate | None:
    """How long the request would wait behind its model's queue (one GetItem), or None: admission
    control off, or the counter not read (logged; the request then waits as before)."""

    def unread(exc: Exception) -> None:
        logger.warning("the model's queue could not be read", extra={"error": type(exc).__name__})

    return read_queue_estimate(get_settings(), clients.admission_dynamodb, execution_input, on_error=unread)


def _start_and_wait(
    execution_input: dict[str, Any],
    caller: Caller,
    wait: WaitPreference,
    queue: QueueEstimate | None = None,
) -> SyncAnswer:
    """Start the caller's job of ``execution_input`` (named by API Gateway's request id) and wait for it
    as ``wait`` asks: the answer of :func:`run_and_wait` (the manifest, a failure, or the job's 202; at
    once when ``queue`` would outlast the wait)."""
    return run_and_wait(
        clients.stepfunctions(),
        environment().jobs_state_machine_arn,
        ExecutionInput(execution_input, caller),
        _request_id(),
        wait,
        s3=clients.s3(),
        expires_in=get_settings().presign_expiry_seconds,
        location=_location,
        poll_sfn=clients.stepfunctions_poll(),
        ledger=clients.spend_ledger(),
        index=clients.image_index(),
        bucket=get_settings().images_bucket,
        queue=queue,
    )


def _generate(raw: Any) -> Response:
    """Validate, start the request as a job and wait for it as ``Prefer`` asks: the manifest (200), the
    failure's status, or the job (202, ``Location``) when it is not done in time."""
    caller = current_caller()
    execution_input, _ = validate_submission(raw, settings=get_settings(), caller=caller, s3=clients.s3())
    queue = _queue_estimate(execution_input)  # before the wait is measured: its read takes time too
    wait = wait_preference(_prefer(), _longest_wait())
    settings = get_settings()
    _log_submission(
        "starting a synchronous request",
        execution_input,
        wait_seconds=wait.seconds,
        queue=queue.document() if queue else None,
    )
    answer = _start_and_wait(execution_input, caller, wait, queue)
    body = answer.body
    if answer.manifest:
        # URLs to show the images (the workflow's, signed anew) and to download them
        body = with_presigned_urls(body, s3=clients.s3(), expires_in=settings.presign_expiry_seconds)
        body = _with_lasting_links(body, caller)
    logger.info("synchronous request answered", extra={"status": answer.status, "job_id": _request_id()})
    return _json(answer.status, body, answer.headers)


@app.post("/images")
def post_images() -> Response:
    return _generate(_body_json())


@app.get("/images")
def get_images() -> Response:
    # Every request field may be a query parameter (strings, converted as the local server does).
    event = app.current_event
    multi = event.multi_value_query_string_parameters or {}
    pairs = [(k, v) for k, values in multi.items() for v in values or [""]]
    return _generate(query_request(pairs or list((event.query_string_parameters or {}).items())))


def _api_base_url() -> str:
    """This API's base URL as the client called it (the stage or a custom domain's base path), ending
    in ``/``: what a lasting link's ``links/<token>`` is appended to."""
    context = app.current_event.request_context
    full = str(context.path or "")
    path = str(app.current_event.path or "")
    base = full[: -len(path)] if path and full.endswith(path) else ""
    return f"https://{context.domain_name}{base.rstrip('/')}/"


def _with_lasting_links(manifest: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """``manifest`` with a lasting link (``link``, ``download_link``) to each of the caller's images,
    ``GET /links/{token}`` of this API for ``LINK_LIFETIME_SECONDS`` (``core/lasting_links.py``); as it
    is when the deployment has no link secret."""
    settings = link_settings()
    if not settings.secret_arn:
        return manifest
    minter = LinkMinter(
        secret=deployment_secret(),
        lifetime_seconds=settings.lifetime_seconds,
        base_url=_api_base_url(),
        namespace=caller.namespace,
    )
    return minter.with_links(manifest)


def _location(job_id: str) -> str:
    """Where the job is, as a path of this request's URL (with the stage or a custom domain's base
    path before ``/jobs``); the body's ``status_url`` stays relative to the API, as documented."""
    full = str(app.current_event.request_context.path or "")
    path = str(app.current_event.path or "")
    base = full[: -len(path)] if path and full.endswith(path) else ""
    return f"{base.rstrip('/')}/jobs/{job_id}"


@app.post("/jobs")
def post_jobs() -> Response:
    caller = current_caller()
    raw = _body_json()
    execution_input, key = validate_submission(
        raw,
        settings=get_settings(),
        idempotency_header=app.current_event.headers.get(IDEMPOTENCY_HEADER),
        caller=caller,
        s3=clients.s3(),
    )
    _log_submission("starting a job", execution_input, idempotency_key=key)
    submission = ExecutionInput(execution_input, caller)
    started = start_job(
        clients.stepfunctions(),
        environment().jobs_state_machine_arn,
        submission,
        key,
        ledger=clients.spend_ledger(),
        index=clients.image_index(),
    )
    # "new_job", not "created": extra keys must not be LogRecord attributes (logging raises KeyError).
    logger.info("job accepted", extra={"job_id": started.job_id, "new_job": started.created})
    body = job_accepted(started.job_id, started.status)
    return _json(202, body, {"Location": _location(started.job_id)})


# -- jobs and models -----------------------------------------------------------------------------


@app.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    caller = current_caller()
    job = describe_job(
        clients.stepfunctions(),
        environment().jobs_state_machine_arn,
        job_id,
        caller=caller,
        s3=clients.s3(),
        expires_in=get_settings().presign_expiry_seconds,
        bucket=get_settings().images_bucket,
    )
    if job.get("manifest"):
        job["manifest"] = _with_lasting_links(job["manifest"], caller)
    logger.info("job described", extra={"job_id": job_id, "status": job["status"]})
    return _json(200, job)


@app.get("/jobs/<job_id>/events")
def get_job_events(job_id: str) -> Response:
    """The job's events as Server-Sent Events, one batch per request: those after ``Last-Event-ID``
    stored so far, and ``retry:`` so the client asks again (API Gateway buffers a Lambda proxy answer:
    ``core/job_events.py``); ``204`` once the client has the end event."""
    event = app.current_event
    after = last_event_id(
        event.headers.get(LAST_EVENT_ID_HEADER), (event.query_string_parameters or {}).get("last_event_id")
    )
    read = job_events(
        clients.stepfunctions(),
        environment().jobs_state_machine_arn,
        job_id,
        caller=current_caller(),
        s3=clients.s3(),
        bucket=get_settings().images_bucket,
        expires_in=get_settings().presign_expiry_seconds,
        after=after,
    )
    logger.info("job events read", extra={"job_id": job_id, "events": len(read.events), "ended": read.ended})
    headers = {**EVENT_HEADERS, **({"Vary": "Origin"} if CORS is not None else {})}
    if read.nothing_left:
        return Response(status_code=204, body="", headers=headers)
    return Response(
        status_code=200, content_type=EVENT_STREAM, body=event_batch(read.events), headers=headers
    )


@app.get("/jobs")
def get_jobs() -> Response:
    """The caller's jobs from the image index, newest first, each with its thumbnail's URL."""
    caller = current_caller()
    event = app.current_event
    multi = event.multi_value_query_string_parameters or {}
    pairs = [(k, v) for k, values in multi.items() for v in values or [""]]
    status, limit, cursor = list_query(pairs or list((event.query_string_parameters or {}).items()))
    listed = list_jobs(
        clients.image_index(),
        caller,
        sfn=clients.stepfunctions(),
        state_machine_arn=environment().jobs_state_machine_arn,
        s3=clients.s3(),
        bucket=get_settings().images_bucket,
        presign=_presigner(),
        status=status,
        limit=limit,
        cursor=cursor,
    )
    logger.info("jobs listed", extra={"listed": len(listed["jobs"]), "more": bool(listed["next_token"])})
    return _json(200, listed)


def _presigner() -> Callable[[str], str]:
    """A presigned GET URL of an image key, valid for the deployment's link lifetime."""
    settings = get_settings()
    s3 = clients.s3()

    def presign(key: str) -> str:
        params = {"Bucket": settings.images_bucket, "Key": key}
        return str(
            s3.generate_presigned_url("get_object", Params=params, ExpiresIn=settings.presign_expiry_seconds)
        )

    return presign


@app.delete("/jobs/<job_id>")
def delete_job(job_id: str) -> Response:
    body = cancel_job(
        clients.stepfunctions(),
        environment().jobs_state_machine_arn,
        current_caller(),
        job_id,
        s3=clients.s3(),
        bucket=get_settings().images_bucket,
    )
    logger.info("job cancelled", extra={"job_id": job_id})
    return _json(202, body, {"Location": _location(job_id)})


@app.post("/jobs/<job_id>/retry")
def post_retry(job_id: str) -> Response:
    caller = current_caller()
    include_filtered = retry_body(_body_json() if app.current_event.body else None)
    retry = retry_job(
        clients.stepfunctions(),
        environment().jobs_state_machine_arn,
        caller,
        job_id,
        s3=clients.s3(),
        include_filtered=include_filtered,
        ledger=clients.spend_ledger(),
        index=clients.image_index(),
    )
    new_id = retry.started.job_id
    logger.info("job retried", extra={"job_id": new_id, "retry_of": job_id, "images": len(retry.images)})
    return _json(202, retry_accepted(retry, job_id), {"Location": _location(new_id)})


@app.get("/images/search")
def get_images_search() -> Response:
    """The caller's own images by prompt words, model and time range (``core/image_index.py``)."""
    caller = current_caller()
    settings = get_settings()
    try:
        found = search_images(
            clients.image_index(),
            caller.namespace,
            app.current_event.query_string_parameters or {},
            allowed_models=settings.allowed_models,
            presign=_presigner(),
        )
    except InvalidRequest as exc:
        raise ApiError.invalid(list(exc.errors)) from None
    except LookupError as exc:
        raise ApiError(503, "IndexUnavailable", str(exc)) from None
    logger.info("images searched", extra={"found": found["count"], "more": bool(found["next_token"])})
    return _json(200, found)


@app.get("/models")
def get_models() -> Response:
    return _json(200, model_catalog(get_settings()))


# -- the OpenAI Images API shape (the OpenAI-compatible RestApi: stacks/openai_api.py) -------------


def _read_image(key: str) -> bytes:
    return bytes(clients.s3().get_object(Bucket=get_settings().images_bucket, Key=key)["Body"].read())


def _openai_generate() -> Response:
    """``POST /v1/images/generations``: OpenAI's request read as ours, the same job as ``POST /images``
    (named by the API request id, waited for as long as this function may), OpenAI's answer and errors
    (:mod:`image_pipeline.core.openai_images`). The caller is the API key API Gateway matched for the
    Bearer key the authorizer handed it (``requestContext.identity.apiKeyId``), as on every route."""
    try:
        caller = current_caller()
        raw = _body_json()
    except ApiError as exc:
        raise openai_error(exc) from None
    settings = get_settings()
    execution_input, generation = check_generation(raw, settings)
    queue = _queue_estimate(execution_input)  # before the wait is measured: its read takes time too
    wait = wait_preference(_prefer(), _longest_wait())
    refuse_behind_queue(queue, wait.seconds)  # 429 before anything is started or paid for
    # ``user`` is recorded here (OpenAI's end-user id, for abuse tracing), never used as the caller.
    _log_submission("starting an OpenAI images request", execution_input, openai_user=generation.user)
    try:
        answer = _start_and_wait(execution_input, caller, wait)
    except ApiError as exc:  # not started: Step Functions busy or unavailable
        raise openai_error(exc) from None
    if answer.manifest:
        signed = with_presigned_urls(answer.body, s3=clients.s3(), expires_in=settings.presign_expiry_seconds)
        answer = answer._replace(body=signed)
    body, headers = generations_answer(
        answer, generation, job_id=_request_id(), waited=wait.seconds, read_image=_read_image
    )
    logger.info(
        "OpenAI images request answered", extra={"job_id": _request_id(), "images": len(body["data"])}
    )
    return _json(200, body, headers)


@app.post(OPENAI_IMAGES_ROUTE)
def post_openai_images() -> Response:
    try:
        return _openai_generate()
    except OpenAIError as exc:
        logger.info("OpenAI images request refused", extra={"status": exc.status, "param": exc.param})
        return _json(exc.status, exc.body(), exc.headers)


# log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: the event holds the API key and the prompt.
@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True, log_event=False
)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    environment()  # a deployment error fails every route, not only the ones that start executions
    return app.resolve(event, context)
