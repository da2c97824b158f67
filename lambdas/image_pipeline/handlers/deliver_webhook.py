"""The webhook delivery function: an SQS event source over the delivery queue (partial batch failures).

Each message is handled by ``core/webhook_delivery.py``: an ended job becomes its deliveries, a
delivery is POSTed, signed. A failed attempt stays on the queue, hidden for its backoff
(ChangeMessageVisibility), and is reported as a batch item failure; the queue's redrive policy moves
it to the dead-letter queue after its last attempt.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline.core.clients import s3_config
from image_pipeline.core.lasting_links import deployment_minter
from image_pipeline.core.observability import tracer
from image_pipeline.core.webhook_delivery import handle_message, message_body
from image_pipeline.core.webhooks import MAX_VISIBILITY_SECONDS, WebhookSettings

logger = Logger()


@cache
def _settings() -> WebhookSettings:
    return WebhookSettings.from_environ()


@cache
def _clients() -> tuple[Any, Any, Any]:
    # S3 as the other functions make it (SigV4, the Regional endpoint): the job's presigned links work.
    return boto3.client("stepfunctions"), boto3.client("s3", config=s3_config()), boto3.client("sqs")


@cache
def _secret() -> str:
    return str(
        boto3.client("secretsmanager").get_secret_value(SecretId=_settings().secret_arn)["SecretString"]
    )


@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = _settings()
    sfn, s3, sqs = _clients()
    failures = []
    for record in event.get("Records", []):
        receive_count = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            outcome = handle_message(
                message_body(record["body"]),
                receive_count,
                sfn=sfn,
                s3=s3,
                bucket=settings.images_bucket,
                secret=_secret,
                send=lambda body: sqs.send_message(QueueUrl=settings.queue_url, MessageBody=json.dumps(body)),
                network=settings.network,
                expires_in=settings.presign_expiry_seconds,
                max_attempts=settings.max_attempts,
                links=deployment_minter,
            )
        except Exception:  # an AWS call failed: the message comes back after its visibility timeout
            logger.exception("webhook message not handled", extra={"message_id": record["messageId"]})
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        logger.info("webhook message", extra={"result": outcome.result, "attempt": receive_count})
        if outcome.result in {"retry", "given_up"}:
            delay = outcome.delay if outcome.result == "retry" else 0
            sqs.change_message_visibility(
                QueueUrl=settings.queue_url,
                ReceiptHandle=record["receiptHandle"],
                VisibilityTimeout=min(delay, MAX_VISIBILITY_SECONDS),
            )
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
