"""One message of the webhook delivery queue, handled: the deployed function and the offline worker
both call :func:`handle_message` (``core/webhooks.py`` says how deliveries are signed and retried).

A message is either the event of an ended execution (deployed: Step Functions' status-change event,
routed to the queue by an EventBridge rule; offline: the same event, sent by the local worker), which
is turned into one delivery message per event the job's webhook asked for, or one delivery, which is
attempted: the job document is read again (``GET /jobs/{id}``'s, fresh links), POSTed and recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from image_pipeline.core.jobs import job_from_execution, started_by
from image_pipeline.core.tenancy import job_id_of
from image_pipeline.core.webhooks import (
    BACKOFF_SECONDS,
    MAX_ATTEMPTS,
    POST_TIMEOUT_SECONDS,
    Delivery,
    Outcome,
    Resolver,
    WebhookNetwork,
    attempt,
    deliveries,
    ended_execution,
    job_webhooks,
    resolve,
    subscription,
)


def job_document(described: Mapping[str, Any], *, s3: Any, bucket: str, expires_in: int) -> dict[str, Any]:
    """The ``GET /jobs/{id}`` document of an ended execution, as its caller sees it."""
    caller = started_by(described)
    name = str(described["name"])
    job_id = (job_id_of(caller, name) if caller is not None else None) or name
    job = job_from_execution(described, s3=s3, expires_in=expires_in, job_id=job_id)
    job["webhooks"] = job_webhooks(s3, bucket, name)
    return job


def handle_message(
    body: Mapping[str, Any],
    receive_count: int,
    *,
    sfn: Any,
    s3: Any,
    bucket: str,
    secret: Callable[[], str],
    send: Callable[[dict[str, Any]], None],
    network: WebhookNetwork,
    expires_in: int,
    schedule: Sequence[int] = BACKOFF_SECONDS,
    max_attempts: int = MAX_ATTEMPTS,
    resolver: Resolver = resolve,
    timeout: float = POST_TIMEOUT_SECONDS,
) -> Outcome:
    """Handle one queue message (attempt ``receive_count`` of it); see the module's description.

    ``send`` puts a message on the delivery queue; ``secret`` gives the signing secret (read only when
    a delivery is made). Raises nothing for a webhook that cannot be reached: that is a ``retry``.
    """
    arn = ended_execution(body)
    delivery = Delivery.from_message(body) if arn is None else None
    if arn is None and delivery is None:
        return Outcome("skipped")  # not ours (an operator's test message)
    described = sfn.describe_execution(executionArn=arn or delivery.execution_arn)  # type: ignore[union-attr]
    sub = subscription(described.get("input"))
    if sub is None or described.get("status") == "RUNNING":
        return Outcome("skipped")
    job = job_document(described, s3=s3, bucket=bucket, expires_in=expires_in)
    if delivery is None:
        for each in deliveries(str(described["executionArn"]), sub, job):
            send(each.message())
        return Outcome("skipped")
    return attempt(
        delivery,
        url=sub.url,
        job=job,
        secret=secret(),
        receive_count=receive_count,
        s3=s3,
        bucket=bucket,
        network=network,
        schedule=schedule,
        max_attempts=max_attempts,
        resolver=resolver,
        timeout=timeout,
    )


def message_body(text: str) -> dict[str, Any]:
    """A queue message's body as JSON (anything else: an empty object, skipped)."""
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
