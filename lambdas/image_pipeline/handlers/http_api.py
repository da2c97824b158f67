"""The HTTP API behind API Gateway (Lambda proxy integration): every route of ``docs/api.md``.

==========================  ==============================================================================
``POST /images``            validate, ``StartSyncExecution`` (Express), answer with the manifest or failure
``GET /images?prompt=...``  the same, with every request field as a query parameter
``POST /jobs``              validate, ``StartExecution`` (Standard): ``202`` + ``Location``; idempotent
``GET /jobs/{id}``          the job: status, progress, manifest with fresh presigned URLs, or error
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

The synchronous routes wait for the Express execution with a read timeout just under this function's
timeout (``SYNC_READ_TIMEOUT_SECONDS``), so a run that takes too long is a 504 from here rather than
from API Gateway. Logs carry the API Gateway request id as correlation id; never headers (API keys),
and the prompt only at DEBUG.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from functools import cache
from typing import Any, ClassVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError, ReadTimeoutError
from pydantic import BaseModel, Field

from image_pipeline.contract.errors import FieldError
from image_pipeline.core import clients
from image_pipeline.core.execution_input import ExecutionInput
from image_pipeline.core.jobs import (
    IDEMPOTENCY_HEADER,
    MAX_BODY_BYTES,
    ApiError,
    describe_job,
    execution_document,
    job_accepted,
    model_catalog,
    parse_body,
    query_request,
    start_job,
    start_refused,
    sync_response,
    sync_wait_exceeded,
    validate_submission,
)
from image_pipeline.core.manifest import with_presigned_urls
from image_pipeline.core.settings import get_settings, model_from_environ
from image_pipeline.core.tenancy import Caller, caller_from_request_context, execution_name

logger = Logger()
_STATE_MACHINE_ARN = r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$"


class HttpApiEnvironment(BaseModel):
    """This handler's own environment; IMAGES_BUCKET, PRESIGN_EXPIRY_SECONDS, ALLOWED_MODELS,
    DEFAULT_MODEL and MAX_IMAGES_PER_REQUEST are the shared :class:`~image_pipeline.core.settings.Settings`.
    CORS_ALLOW_ORIGINS (comma-separated, ``*`` for any; unset: no CORS headers) is read at import."""

    #: Field -> the environment variable it is read from.
    ENVIRONMENT: ClassVar[dict[str, str]] = {
        "jobs_state_machine_arn": "JOBS_STATE_MACHINE_ARN",
        "sync_state_machine_arn": "SYNC_STATE_MACHINE_ARN",
        "sync_read_timeout_seconds": "SYNC_READ_TIMEOUT_SECONDS",
    }

    jobs_state_machine_arn: str = Field(pattern=_STATE_MACHINE_ARN)
    sync_state_machine_arn: str = Field(pattern=_STATE_MACHINE_ARN)
    #: How long ``POST /images`` waits for the Express execution: just under the function's timeout.
    sync_read_timeout_seconds: int = Field(default=27, ge=1, le=900)


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
        allow_headers=["Content-Type", "X-Api-Key", IDEMPOTENCY_HEADER],
        expose_headers=["Location"],
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
    return _json(exc.status, exc.body())


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


def _generate(raw: Any) -> Response:
    """Validate, run the Express workflow and wait for it: the manifest, or the failure's status."""
    caller = current_caller()
    execution_input, _ = validate_submission(raw, settings=get_settings())
    env = environment()
    sfn = clients.stepfunctions_sync(env.sync_read_timeout_seconds)
    _log_submission("starting a synchronous execution", execution_input)
    try:
        result = sfn.start_sync_execution(
            stateMachineArn=env.sync_state_machine_arn,
            name=execution_name(caller, _request_id()),
            input=execution_document(ExecutionInput(execution_input, caller).to_document()),
        )
    except ReadTimeoutError:
        raise sync_wait_exceeded(env.sync_read_timeout_seconds) from None
    except ClientError as exc:
        raise start_refused(exc) from exc
    status, body = sync_response(result)
    if status == 200 and isinstance(body, dict) and "bucket" in body:
        # URLs to show the images (the workflow's, signed anew) and to download them
        body = with_presigned_urls(body, s3=clients.s3(), expires_in=get_settings().presign_expiry_seconds)
    logger.info(
        "synchronous execution ended", extra={"execution_status": result.get("status"), "status": status}
    )
    return _json(status, body)


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


def _location(job_id: str) -> str:
    """Where the job is, as a path of this request's URL (with the stage or a custom domain's base
    path before ``/jobs``); the body's ``status_url`` stays relative to the API, as documented."""
    path = str(app.current_event.request_context.path or "")
    if path.rstrip("/").endswith("/jobs"):
        return f"{path.rstrip('/')}/{job_id}"
    return f"/jobs/{job_id}"


@app.post("/jobs")
def post_jobs() -> Response:
    caller = current_caller()
    raw = _body_json()
    execution_input, key = validate_submission(
        raw, settings=get_settings(), idempotency_header=app.current_event.headers.get(IDEMPOTENCY_HEADER)
    )
    _log_submission("starting a job", execution_input, idempotency_key=key)
    submission = ExecutionInput(execution_input, caller)
    started = start_job(clients.stepfunctions(), environment().jobs_state_machine_arn, submission, key)
    # "new_job", not "created": extra keys must not be LogRecord attributes (logging raises KeyError).
    logger.info("job accepted", extra={"job_id": started.job_id, "new_job": started.created})
    body = job_accepted(started.job_id, started.status)
    return _json(202, body, {"Location": _location(started.job_id)})


# -- jobs and models -----------------------------------------------------------------------------


@app.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    job = describe_job(
        clients.stepfunctions(),
        environment().jobs_state_machine_arn,
        job_id,
        caller=current_caller(),
        s3=clients.s3(),
        expires_in=get_settings().presign_expiry_seconds,
    )
    logger.info("job described", extra={"job_id": job_id, "status": job["status"]})
    return _json(200, job)


@app.get("/models")
def get_models() -> Response:
    return _json(200, model_catalog(get_settings()))


# log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: the event holds the API key and the prompt.
@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True, log_event=False
)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    environment()  # a deployment error fails every route, not only the ones that start executions
    return app.resolve(event, context)
