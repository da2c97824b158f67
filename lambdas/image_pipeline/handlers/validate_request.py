"""First state: read who asked for what, check the request for its model, plan one branch per image and
reserve its estimated cost on the caller's daily ledger (unless its entry point did: ``core/spend.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline.core import clients
from image_pipeline.core.execution_input import read_execution_input
from image_pipeline.core.image_index import execution_start
from image_pipeline.core.observability import tracer
from image_pipeline.core.planning import check_request, plan
from image_pipeline.core.refine import check_stored_images
from image_pipeline.core.settings import get_settings
from image_pipeline.core.spend import reserve_planned
from image_pipeline.core.tenancy import job_id_of
from image_pipeline.models.base import IMAGE_FIELDS

logger = Logger()


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    execution = read_execution_input(event.get("input"))
    name = str(event["execution_name"])
    # The job id the caller knows: the execution name without the caller's namespace (an execution
    # the console, an event or a batch named is its own request id).
    request_id = job_id_of(execution.caller, name) or name
    logger.append_keys(request_id=request_id, caller_namespace=execution.caller.namespace)
    index = clients.image_index()
    started = execution_start(event.get("execution_started_at"))
    try:
        settings = get_settings()
        checked = check_request(execution.request, settings)
        # The stored images an operation names: the caller's, there, of sizes the model takes.
        if any(getattr(checked.request, field) for field in IMAGE_FIELDS):
            check_stored_images(
                checked.request,
                checked.adapter,
                caller=execution.caller,
                s3=clients.s3(),
                bucket=settings.images_bucket,
            )
        planned = plan(
            checked,
            request_id,
            caller=execution.caller,
            retry=execution.retry,
            execution_name=name,
        )
        ledger = clients.spend_ledger()
        if ledger is not None:  # SpendLimitExceeded (a named error) when the caller's ceiling is reached
            planned["spend"] = reserve_planned(ledger, planned, execution.spend, now=datetime.now(UTC))
    except Exception as exc:
        if index is not None:  # the job is listed as failed, with the reason (a failed write is only logged)
            index.fail_job(
                execution.caller.namespace,
                request_id,
                started=started,
                error=type(exc).__name__,
                message=str(exc),
                execution_name=name,
                request=execution.request,
            )
        raise
    if index is not None:
        index.put_job(planned, started=started)  # a failed write is logged and counted, never raised
    logger.info("request planned", extra={"model": planned["model"], "count": len(planned["images"])})
    logger.debug("prompt", extra={"prompt": planned["request"].get("prompt")})
    return planned
