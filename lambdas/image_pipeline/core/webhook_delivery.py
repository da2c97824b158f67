"""One message of the webhook delivery queue, handled: the deployed function and the offline worker
both call :func:`handle_message` (``core/webhooks.py`` says how deliveries are signed and retried).

A message is either the event of an ended execution (deployed: Step Functions' status-change event,
routed to the queue by an EventBridge rule; offline: the same event, sent by the local worker), which
is turned into one delivery message per event the job's webhook asked for (an image's only when its
branch did not queue it already), or one delivery, which is attempted: the job document is read again
(``GET /jobs/{id}``'s, fresh links), or, for an image its branch queued as it was stored
(``handlers/generate_image.py``), the image's record the message carries is signed; then POSTed and
recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from image_pipeline.core.job_history import signed_images
from image_pipeline.core.jobs import job_from_execution, started_by
from image_pipeline.core.lasting_links import LinkMinter
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
    claim_and_send,
    deliveries,
    ended_execution,
    job_webhooks,
    payload,
    resolve,
    subscription,
)


def _job_id(described: Mapping[str, Any]) -> str:
    """The id the caller knows an execution by (its name without the caller's namespace)."""
    caller = started_by(described)
    name = str(described["name"])
    return (job_id_of(caller, name) if caller is not None else None) or name


#: A minter of lasting links to a caller's images (by namespace), or None: no links.
Links = Callable[[str], LinkMinter | None]


def no_links(namespace: str) -> LinkMinter | None:
    return None


def _minter(described: Mapping[str, Any], links: Links) -> LinkMinter | None:
    caller = started_by(described)
    return links(caller.namespace) if caller is not None else None


def job_document(
    described: Mapping[str, Any], *, s3: Any, bucket: str, expires_in: int, links: Links = no_links
) -> dict[str, Any]:
    """The ``GET /jobs/{id}`` document of an ended execution, as its caller sees it (lasting links
    minted anew, as the API mints them)."""
    name = str(described["name"])
    job = job_from_execution(described, s3=s3, expires_in=expires_in, job_id=_job_id(described))
    minter = _minter(described, links)
    if minter is not None and job.get("manifest"):
        job["manifest"] = minter.with_links(job["manifest"])
    job["webhooks"] = job_webhooks(s3, bucket, name)
    return job


def branch_image(
    described: Mapping[str, Any],
    record: Mapping[str, Any],
    *,
    s3: Any,
    bucket: str,
    expires_in: int,
    links: Links = no_links,
) -> dict[str, Any]:
    """The entry of an image its branch queued (``images_so_far``'s shape), with presigned URLs and
    its lasting link when its key is in the job's caller's namespace."""
    caller = started_by(described)
    if caller is None:
        return {**record, "key": None}
    (image,) = signed_images(
        [dict(record)], s3=s3, bucket=bucket, namespace=caller.namespace, expires_in=expires_in
    )
    minter = links(caller.namespace)
    if minter is not None:
        (image,) = minter.with_links({"images": [image]})["images"]
    return image


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
    links: Links = no_links,
) -> Outcome:
    """Handle one queue message (attempt ``receive_count`` of it); see the module's description.

    ``send`` puts a message on the delivery queue; ``secret`` gives the signing secret (read only when
    a delivery is made); ``links`` mints the images' lasting links (the deployment's, by the caller's
    namespace). Raises nothing for a webhook that cannot be reached: that is a ``retry``.
    An ``image`` delivery its branch queued (it carries the image's record) is made while the job still
    runs; every other delivery is of an ended job, whose document is read again (fresh links).
    """
    arn = ended_execution(body)
    delivery = Delivery.from_message(body) if arn is None else None
    if arn is None and delivery is None:
        return Outcome("skipped")  # not ours (an operator's test message)
    described = sfn.describe_execution(executionArn=arn or delivery.execution_arn)  # type: ignore[union-attr]
    sub = subscription(described.get("input"))
    if sub is None:
        return Outcome("skipped")
    running = described.get("status") == "RUNNING"
    if delivery is None:  # an ended job: one message per delivery not queued yet (claimed: once, even
        if running:  # when EventBridge delivers the job's end twice, or an image's branch queued it)
            return Outcome("skipped")
        job = job_document(described, s3=s3, bucket=bucket, expires_in=expires_in, links=links)
        for each in deliveries(str(described["executionArn"]), sub, job):
            claim_and_send(s3, bucket, each, send)
        return Outcome("skipped")
    if delivery.record is not None:
        image = branch_image(
            described, delivery.record, s3=s3, bucket=bucket, expires_in=expires_in, links=links
        )
        payload_body = payload(delivery, {"job_id": _job_id(described)}, image)
    elif running:
        return Outcome("skipped")
    else:
        job = job_document(described, s3=s3, bucket=bucket, expires_in=expires_in, links=links)
        payload_body = payload(delivery, job)
    return attempt(
        delivery,
        url=sub.url,
        body=payload_body,
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
