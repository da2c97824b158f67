"""Signed webhooks offline: the deployed delivery, run by a background worker over moto's SQS.

Deployed, an EventBridge rule puts Step Functions' status-change event of each ended job on the
delivery queue, and the delivery function handles its messages (``stacks/webhooks.py``). moto sends no
status-change events, so the worker looks for newly ended executions of the engine's jobs workflow and
puts the same event on a moto SQS queue (with a dead-letter queue after ``max_attempts`` receives), on
which the image function also queues each image's delivery as it stores the image (as deployed), then
handles the queue's messages with the deployed code (``core/webhook_delivery.handle_message``): the same
deliveries, signed with ``secret``, retried after ``schedule`` (short here, seconds), recorded where
``GET /jobs/{id}`` reads them. Webhooks may point only to this machine (``WEBHOOK_NETWORK=loopback``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import boto3
from image_pipeline.core.lasting_links import deployment_minter
from image_pipeline.core.webhook_delivery import handle_message, message_body
from image_pipeline.core.webhooks import STATUS_CHANGE, secret_key

from imagegen.runtime.engine import REGION, OfflineEngine

#: Seconds between a failed attempt and the next, offline (deployed: core/webhooks.BACKOFF_SECONDS).
LOCAL_SCHEDULE: tuple[int, ...] = (1, 2, 5, 10, 30)
LOCAL_MAX_ATTEMPTS = len(LOCAL_SCHEDULE) + 1
QUEUE = "imagegen-webhook-deliveries"
DEAD_LETTERS = "imagegen-webhook-dead-deliveries"


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` cannot sign webhooks (not ``whsec_<base64>``), or None."""
    try:
        secret_key(secret)
    except ValueError as exc:
        return f"not whsec_<base64>: {exc}"
    return None


class LocalWebhooks:
    """A background worker delivering the engine's webhooks; use as a context manager while the engine
    runs. ``schedule`` and ``max_attempts`` are the retry plan (tests make them short)."""

    def __init__(
        self,
        engine: OfflineEngine,
        *,
        secret: str,
        schedule: Sequence[int] = LOCAL_SCHEDULE,
        max_attempts: int = LOCAL_MAX_ATTEMPTS,
        poll_seconds: float = 0.2,
        timeout: float = 5.0,
    ) -> None:
        secret_key(secret)  # a bad secret fails here, not at the first delivery
        self.engine = engine
        self.secret = secret
        self.schedule = tuple(schedule)
        self.max_attempts = max_attempts
        self.poll_seconds = poll_seconds
        self.timeout = timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: set[str] = set()
        self.queue_url = ""
        self.dead_letter_url = ""

    def __enter__(self) -> LocalWebhooks:
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.dead_letter_url = self.sqs.create_queue(QueueName=DEAD_LETTERS)["QueueUrl"]
        dead_arn = self.sqs.get_queue_attributes(QueueUrl=self.dead_letter_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        redrive = {"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(self.max_attempts)}
        self.queue_url = self.sqs.create_queue(
            QueueName=QUEUE, Attributes={"RedrivePolicy": json.dumps(redrive), "VisibilityTimeout": "60"}
        )["QueueUrl"]
        self._seen = set(self._ended())  # jobs that ended before the worker started are not delivered
        self.engine.set_webhook_queue(self.queue_url)  # each image's delivery, queued as it is stored
        self._thread = threading.Thread(target=self._run, name="imagegen-webhooks", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.set_webhook_queue(None)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def dead_letters(self) -> list[dict[str, Any]]:
        """The bodies of the messages in the dead-letter queue (left there)."""
        got = self.sqs.receive_message(
            QueueUrl=self.dead_letter_url, MaxNumberOfMessages=10, VisibilityTimeout=0
        )
        return [json.loads(m["Body"]) for m in got.get("Messages", [])]

    # -- the worker --------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._queue_ended_jobs()
                self._deliver()
            except Exception:  # the engine stopping under the worker, or a passing error: try again
                if self._stop.is_set():
                    return
            self._stop.wait(self.poll_seconds)

    def _ended(self) -> list[str]:
        arns = []
        pages = self.engine.sfn.get_paginator("list_executions").paginate(
            stateMachineArn=self.engine.state_machines["jobs"]
        )
        for page in pages:
            arns += [e["executionArn"] for e in page["executions"] if e["status"] != "RUNNING"]
        return arns

    def _queue_ended_jobs(self) -> None:
        for arn in self._ended():
            if arn in self._seen:
                continue
            self._seen.add(arn)
            event = {"detail-type": STATUS_CHANGE, "source": "aws.states", "detail": {"executionArn": arn}}
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(event))

    def _deliver(self) -> None:
        got = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"]
        )
        for message in got.get("Messages", []):
            outcome = handle_message(
                message_body(message["Body"]),
                int(message["Attributes"]["ApproximateReceiveCount"]),
                sfn=self.engine.sfn,
                s3=self.engine.s3,
                bucket=self.engine.config.bucket,
                secret=lambda: self.secret,
                send=lambda body: self.sqs.send_message(
                    QueueUrl=self.queue_url, MessageBody=json.dumps(body)
                ),
                network="loopback",
                expires_in=self.engine.config.presign_expiry_seconds,
                schedule=self.schedule,
                max_attempts=self.max_attempts,
                timeout=self.timeout,
                links=deployment_minter,  # the engine's link secret, and the server's URL once known
            )
            if outcome.result in {"retry", "given_up"}:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=outcome.delay,
                )
            else:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
