"""Map branch: one image from the model, stored in S3; the branch's admission slot is handed to the
oldest waiting branch (or given back) as soon as the model has answered, before the upload;
``ReleaseSlot`` after this step is the safety net."""

from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline.core import clients
from image_pipeline.core.admission import holder_id, release_after_call
from image_pipeline.core.admission_runtime import admission_runtime
from image_pipeline.core.cost import image_price
from image_pipeline.core.generation import generate_image
from image_pipeline.core.observability import log_metrics, record_hand_off, record_image, tracer
from image_pipeline.core.settings import get_settings
from image_pipeline.core.webhooks import queue_image_delivery

logger = Logger()


@tracer.capture_lambda_handler(capture_response=False)
@log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(request_id=event.get("request_id"), image_index=event["image"]["index"])
    settings = get_settings()
    model, holder = event["model"], holder_id(str(event.get("execution_name")), event["image"]["index"])

    def give_slot_back() -> None:  # right after the model's answer: the upload runs outside the slot
        runtime = admission_runtime(settings)
        if runtime is not None:
            released = release_after_call(
                runtime.semaphore,
                model,
                holder,
                runtime.limit(model),
                time.time(),
                notify=runtime.notify,
                cancelled=runtime.cancelled,
                on_error=lambda exc: logger.warning("slot left to ReleaseSlot", extra={"error": str(exc)}),
            )
            record_hand_off(model, runtime.semaphore.report)
            logger.debug("slot handed on after the call", extra={"holder": holder, "released": released})

    record = generate_image(
        event,
        bedrock=clients.bedrock_runtime(),
        s3=clients.s3(),
        bucket=settings.images_bucket,
        region=settings.region,
        catalog=clients.image_index(),
        price=image_price(event["model"], event["request"].get("quality")),
        after_model_call=give_slot_back,
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
