"""``GET /jobs/{id}`` and ``GET /models`` behind API Gateway (Lambda proxy integration).

``POST /images`` and ``POST /jobs`` do not come here: API Gateway starts the workflows itself. The
job id is the execution name of the Standard workflow, so its ARN is derived from
``JOBS_STATE_MACHINE_ARN``; the manifest of a finished job gets fresh presigned URLs on every call.
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import BaseModel, Field, ValidationError

from image_pipeline.core import clients
from image_pipeline.core.jobs import (
    ApiError,
    check_job_id,
    execution_arn,
    job_from_execution,
    job_not_found,
    model_catalog,
    progress_from_history,
)
from image_pipeline.core.settings import get_settings

logger = Logger()
#: Pages of execution history read for the progress of a running job (1000 events each).
MAX_HISTORY_PAGES = 5


class JobsApiEnvironment(BaseModel):
    """This handler's own environment; IMAGES_BUCKET, PRESIGN_EXPIRY_SECONDS, ALLOWED_MODELS and
    DEFAULT_MODEL are the shared :class:`~image_pipeline.core.settings.Settings`. CORS_ALLOW_ORIGIN
    (default ``*``) sets the CORS origin of the answers."""

    jobs_state_machine_arn: str = Field(
        pattern=r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$"
    )


@cache
def environment() -> JobsApiEnvironment:
    """Read once per container; a bad value fails every request loudly (a deployment error)."""
    try:
        return JobsApiEnvironment(jobs_state_machine_arn=os.environ.get("JOBS_STATE_MACHINE_ARN", ""))
    except ValidationError as exc:
        raise RuntimeError(f"Invalid handler configuration: {exc}") from exc


app = APIGatewayRestResolver(
    cors=CORSConfig(
        allow_origin=os.environ.get("CORS_ALLOW_ORIGIN", "*"),
        allow_headers=["Content-Type", "X-Api-Key", "Idempotency-Key"],
        expose_headers=["Location"],
    )
)


def _json(status: int, body: Any) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


@app.exception_handler(ApiError)
def api_error(exc: ApiError) -> Response:
    return _json(exc.status, exc.body())


def _progress(arn: str) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    for _ in range(MAX_HISTORY_PAGES):
        page = clients.stepfunctions().get_execution_history(**kwargs)
        events.extend(page.get("events", []))
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    return progress_from_history(events)


@app.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    arn = execution_arn(environment().jobs_state_machine_arn, check_job_id(job_id))
    try:
        described = clients.stepfunctions().describe_execution(executionArn=arn)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"ExecutionDoesNotExist", "InvalidArn"}:
            raise job_not_found(job_id) from None
        raise
    progress = _progress(arn) if described["status"] == "RUNNING" else None
    settings = get_settings()
    job = job_from_execution(
        described, s3=clients.s3(), expires_in=settings.presign_expiry_seconds, progress=progress
    )
    logger.info("job described", extra={"job_id": job_id, "status": job["status"]})
    return _json(200, job)


@app.get("/models")
def get_models() -> Response:
    return _json(200, model_catalog(get_settings()))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
