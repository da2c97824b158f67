"""Map branch: one image from the model, stored in S3."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline.core import clients
from image_pipeline.core.cost import image_price
from image_pipeline.core.generation import generate_image
from image_pipeline.core.observability import log_metrics, record_image, tracer
from image_pipeline.core.settings import get_settings
from image_pipeline.core.webhooks import queue_image_delivery

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
    _queue_image_webhook(event, record, settings.images_bucket)
    logger.info(
        "image done",
        extra={k: record.get(k) for k in ("status", "reason_code", "seed", "model_latency_ms", "cached")},
    )
    return record


def _queue_image_webhook(event: dict[str, Any], record: dict[str, Any], bucket: str) -> None:
    """Queue the image's webhook now, if its job asked for one; a failure is logged, never raised (the
    job's end queues it instead: a webhook never fails a job)."""
    queue_url = clients.webhook_queue_url()
    if not queue_url or not event.get("image_webhook"):
        return
    sqs = clients.webhook_sqs()
    try:
        queued = queue_image_delivery(
            event,
            record,
            s3=clients.webhook_s3(),
            bucket=bucket,
            send=lambda body: sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body)),
        )
    except Exception:
        logger.warning("image webhook not queued; the job's end queues it", exc_info=True)
        return
    logger.info("image webhook queued" if queued else "image webhook left to the job's end")
