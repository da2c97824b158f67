"""Batch, last state: every line's outcome and the totals, in ``batch_manifest.json``."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline.core import clients
from image_pipeline.core.batch import build_batch_manifest
from image_pipeline.core.observability import tracer

logger = Logger()


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(batch_id=event.get("batch_id"))
    summary = build_batch_manifest(event, s3=clients.s3(), sfn=clients.stepfunctions())
    logger.info(
        "batch manifest built",
        extra={k: summary[k] for k in ("status", "lines", "line_statuses", "failed_lines", "error")},
    )
    return summary
