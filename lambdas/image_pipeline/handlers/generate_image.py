"""Map branch: one image from the model, stored in S3."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline.core import clients
from image_pipeline.core.cost import image_price
from image_pipeline.core.generation import generate_image
from image_pipeline.core.observability import log_metrics, record_image, tracer
from image_pipeline.core.settings import get_settings

logger = Logger()


@tracer.capture_lambda_handler(capture_response=False)
@log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(request_id=event.get("request_id"), image_index=event["image"]["index"])
    settings = get_settings()
    record = generate_image(
        event,
        bedrock=clients.bedrock_runtime(),
        s3=clients.s3(),
        bucket=settings.images_bucket,
        region=settings.region,
        catalog=clients.image_index(),
        price=image_price(event["model"], event["request"].get("quality")),
    )
    record_image(record, event["model"])
    logger.info(
        "image done",
        extra={k: record.get(k) for k in ("status", "reason_code", "seed", "model_latency_ms", "cached")},
    )
    return record
