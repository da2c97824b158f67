"""Batch, first state: read the JSONL file, write the Distributed Map's items, plan the batch."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline.core import clients
from image_pipeline.core.batch import batch_settings, prepare_batch
from image_pipeline.core.observability import tracer

logger = Logger()


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(batch_execution=event.get("execution_name"))
    plan = prepare_batch(
        event.get("input"),
        s3=clients.s3(),
        request_state_machine_arn=str(event["request_state_machine_arn"]),
        settings=batch_settings(),
    )
    logger.info(
        "batch prepared",
        extra={k: plan[k] for k in ("batch_id", "source_key", "lines", "invalid_lines", "max_concurrency")},
    )
    return plan
