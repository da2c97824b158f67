"""Signed webhooks: where a request's webhook may point, how a delivery is signed, sent and retried.

A request may carry ``webhook`` (and ``webhook_events``: ``completed``, the default, and/or ``image``).
When its job ends, one delivery per event is queued (deployed: the Step Functions status-change event
reaches the delivery queue through an EventBridge rule; offline: ``imagegen.runtime.local_webhooks``
does the same), and the delivery function (``handlers/deliver_webhook.py``) POSTs each one, signed as
the Standard Webhooks specification says (https://www.standardwebhooks.com/):

* ``webhook-id``: the delivery's id, the same on every attempt (receivers deduplicate on it);
* ``webhook-timestamp``: seconds since the epoch when the attempt was signed;
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`` with the deployment's
  secret (``whsec_<base64>``, or the bare base64 as Secrets Manager generates it).

The signing is the specification's few lines here (the Lambda asset ships no third-party package);
the tests verify every delivery with the ``standardwebhooks`` package, not with this code.

Where a webhook may point (:func:`webhook_problem`): deployed, an https URL whose host resolves only to
public addresses (not private, loopback, link-local, multicast, reserved or unspecified), checked when
the request is checked and again at each delivery, which connects to the address it checked (a name
that resolves elsewhere in between, DNS rebinding, is not followed). Offline (``WEBHOOK_NETWORK`` is
``loopback``), http or https to this machine only.

Retries: a failed attempt leaves its message on the queue, hidden for :data:`BACKOFF_SECONDS` [n-1]
after attempt n; after :data:`MAX_ATTEMPTS` (more than a day of waiting, :func:`retry_window_seconds`)
the queue moves it to its dead-letter queue, from which an operator redrives it. Each delivery's
attempts are recorded in S3 (``webhooks/<execution name>/<delivery>.json``) and shown by
``GET /jobs/{id}``. A delivery never changes its job.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import os
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from image_pipeline.contract.errors import FieldError
from image_pipeline.core.cancellation import write_once
from image_pipeline.core.job_history import image_entry
from image_pipeline.core.settings import model_from_environ, model_to_environ

# -- where a webhook may point -----------------------------------------------------------------------

#: ``public`` (deployed): https to public addresses; ``loopback`` (offline): http(s) to this machine.
WebhookNetwork = Literal["public", "loopback"]
NETWORK_VARIABLE = "WEBHOOK_NETWORK"

Resolver = Callable[[str, int], list[str]]


def webhook_network(environ: Mapping[str, str] | None = None) -> WebhookNetwork:
    """Where this process lets webhooks point (``WEBHOOK_NETWORK``; default ``public``)."""
    value = (os.environ if environ is None else environ).get(NETWORK_VARIABLE, "public")
    return "loopback" if value == "loopback" else "public"


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


@dataclass(frozen=True)
class Target:
    """A webhook URL that may be called, and the address its host resolved to when checked."""

    scheme: str
    host: str
    port: int
    path: str
    address: str


def webhook_target(url: str, *, network: WebhookNetwork, resolver: Resolver = resolve) -> Target | str:
    """Where ``url`` may be called from ``network``, or why not (a message for the ``webhook`` field)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    allowed = ("https",) if network == "public" else ("http", "https")
    if scheme not in allowed:
        return "must be an https URL" if network == "public" else "must be an http or https URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password"
    host = parts.hostname
    if not host:
        return "must name a host"
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return "must have a valid port"
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolver(host, port)]
        except (OSError, UnicodeError, ValueError):
            return f"must name a host that resolves; {host} does not"
    if not addresses:
        return f"must name a host that resolves; {host} does not"
    if network == "public":
        bad = [a for a in addresses if not _public(a)]
        if bad:
            return (
                f"must resolve to public addresses only; {host} resolves to {bad[0]}, "
                "which is private, loopback, link-local, multicast or reserved"
            )
    else:
        bad = [a for a in addresses if not a.is_loopback]
        if bad:
            return f"must point to this machine offline (127.0.0.1, ::1 or localhost), not {host}"
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, host, port, path, str(addresses[0]))


def webhook_problems(
    webhook: str | None,
    events: Sequence[str] | None,
    *,
    network: WebhookNetwork | None = None,
    resolver: Resolver = resolve,
) -> list[FieldError]:
    """What is wrong with a request's ``webhook`` and ``webhook_events`` (empty: nothing)."""
    if webhook is None:
        if events is not None:
            return [FieldError("webhook_events", "needs a webhook to send them to")]
        return []
    checked = webhook_target(webhook, network=network or webhook_network(), resolver=resolver)
    return [FieldError("webhook", checked)] if isinstance(checked, str) else []


# -- signing (Standard Webhooks) -----------------------------------------------------------------

SECRET_PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix is optional, padding too)."""
    text = secret.strip().removeprefix(SECRET_PREFIX)
    key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def signature_headers(secret: str, message_id: str, body: bytes, *, timestamp: int) -> dict[str, str]:
    """The Standard Webhooks headers of ``body`` (``webhook-signature``: ``v1,<base64 HMAC-SHA256>``)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


# -- deliveries ------------------------------------------------------------------------------------

#: Seconds a failed delivery waits before attempt n+1 (index n-1): about 40 hours in all. Each is at
#: most SQS's largest visibility timeout (12 hours).
BACKOFF_SECONDS: tuple[int, ...] = (30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 43200, 43200)
#: Attempts of one delivery; the delivery queue's ``maxReceiveCount``: the next receive moves it to
#: the dead-letter queue.
MAX_ATTEMPTS = len(BACKOFF_SECONDS) + 1
#: Seconds one POST may take (connect and answer).
POST_TIMEOUT_SECONDS = 10
MAX_VISIBILITY_SECONDS = 43_200
#: Where delivery records live in the images bucket.
RECORDS_PREFIX = "webhooks/"


class WebhookSettings(BaseModel):
    """The delivery function's environment (the CDK app writes it with :meth:`to_environment`)."""

    ENVIRONMENT: ClassVar[dict[str, str]] = {
        "images_bucket": "IMAGES_BUCKET",
        "queue_url": "WEBHOOK_QUEUE_URL",
        "secret_arn": "WEBHOOK_SECRET_ARN",
        "presign_expiry_seconds": "PRESIGN_EXPIRY_SECONDS",
        "network": NETWORK_VARIABLE,
        "max_attempts": "WEBHOOK_MAX_ATTEMPTS",
    }

    images_bucket: str = Field(default="", description="Where delivery records are kept (webhooks/).")
    queue_url: str = Field(default="", description="The delivery queue (one message per delivery).")
    secret_arn: str = Field(default="", description="The Secrets Manager secret that signs deliveries.")
    presign_expiry_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    network: WebhookNetwork = "public"
    max_attempts: int = Field(
        default=MAX_ATTEMPTS, ge=1, le=1000, description="The delivery queue's maxReceiveCount."
    )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> WebhookSettings:
        return model_from_environ(cls, cls.ENVIRONMENT, environ, "webhook delivery")

    def to_environment(self) -> dict[str, str]:
        return model_to_environ(self, self.ENVIRONMENT)


def retry_window_seconds(schedule: Sequence[int] = BACKOFF_SECONDS, max_attempts: int = MAX_ATTEMPTS) -> int:
    """Seconds from a delivery's first attempt to its last (the waits between ``max_attempts``)."""
    return sum(backoff_seconds(n, schedule) for n in range(1, max_attempts))


def backoff_seconds(attempt: int, schedule: Sequence[int] = BACKOFF_SECONDS) -> int:
    """Seconds to wait after failed attempt ``attempt`` (1-based); past the schedule, its last wait."""
    return schedule[min(attempt, len(schedule)) - 1]


@dataclass(frozen=True)
class Delivery:
    """One webhook call to make: the job's end (``completed``) or one image (``image``, ``index``).

    ``record`` is the image's entry as its branch stored it (:func:`image_pipeline.core.job_history.
    image_entry`), carried by an ``image`` delivery queued by that branch while the job runs; without
    it, the image is read from the ended job's manifest.
    """

    execution_arn: str
    event: str
    index: int | None = None
    record: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        """Its name within the job: ``completed`` or ``image-<index>``."""
        return self.event if self.index is None else f"{self.event}-{self.index}"

    def message(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"execution_arn": self.execution_arn, "event": self.event, "index": self.index}
        if self.record is not None:
            raw["record"] = dict(self.record)
        return {"webhook_delivery": raw}

    @classmethod
    def from_message(cls, body: Mapping[str, Any]) -> Delivery | None:
        raw = body.get("webhook_delivery")
        if not isinstance(raw, Mapping):
            return None
        record = raw.get("record")
        return cls(
            str(raw["execution_arn"]),
            str(raw["event"]),
            raw.get("index"),
            dict(record) if isinstance(record, Mapping) else None,
        )


def execution_name(execution_arn: str) -> str:
    return execution_arn.rsplit(":", 1)[-1]


def delivery_id(delivery: Delivery) -> str:
    """The ``webhook-id`` of a delivery: the same on each attempt, distinct per job and event."""
    digest = hashlib.sha256(f"{delivery.execution_arn}|{delivery.name}".encode()).hexdigest()[:24]
    return f"msg_{digest}"


def record_key(delivery: Delivery) -> str:
    return f"{RECORDS_PREFIX}{execution_name(delivery.execution_arn)}/{delivery.name}.json"


@dataclass(frozen=True)
class Subscription:
    """A job's webhook and the events it asked for."""

    url: str
    events: tuple[str, ...]


def subscription(execution_input: Any) -> Subscription | None:
    """The webhook of an execution's input (the envelope ``{"request": ...}``, an event, or a bare
    request), or None."""
    if isinstance(execution_input, str):
        try:
            execution_input = json.loads(execution_input)
        except ValueError:
            return None
    if not isinstance(execution_input, Mapping):
        return None
    request = execution_input.get("request", execution_input.get("detail", execution_input))
    if not isinstance(request, Mapping) or not isinstance(request.get("webhook"), str):
        return None
    events = request.get("webhook_events") or ["completed"]
    return Subscription(str(request["webhook"]), tuple(str(e) for e in events))


def deliveries(execution_arn: str, sub: Subscription, job: Mapping[str, Any]) -> list[Delivery]:
    """The deliveries of an ended job: one per image of its manifest (``image``), then ``completed``.

    An image whose branch already queued its delivery (:func:`queue_image_delivery`) is left to it:
    the caller claims each delivery first (:func:`claim_and_send`) and queues only those it claimed.
    """
    out: list[Delivery] = []
    if "image" in sub.events:
        images = (job.get("manifest") or {}).get("images") or []
        out.extend(Delivery(execution_arn, "image", int(i.get("index", n))) for n, i in enumerate(images))
    if "completed" in sub.events:
        out.append(Delivery(execution_arn, "completed"))
    return out


def payload(
    delivery: Delivery, job: Mapping[str, Any], image: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What a delivery POSTs: the job document (``completed``), or its image's entry (``image``: ``image``
    when given, else the entry of the job's manifest)."""
    if delivery.event == "completed":
        return {"type": "job.completed", "job": dict(job)}
    if image is None:
        images = (job.get("manifest") or {}).get("images") or []
        image = next((i for i in images if i.get("index") == delivery.index), None)
    return {"type": "job.image", "job_id": job.get("job_id"), "image": dict(image) if image else None}


# -- image deliveries, queued by the branch that stored the image ---------------------------------

#: Branch outcomes whose ``image`` webhook the branch queues itself (the image was stored, or the model
#: answered with a filter): every other image (failed, cancelled) is queued when its job ends.
BRANCH_DELIVERED = frozenset({"SUCCEEDED", "FILTERED"})


def claim(s3: Any, bucket: str, delivery: Delivery, *, now: Callable[[], float] = time.time) -> bool:
    """Write ``delivery``'s record before its message is queued, once (``If-None-Match: *``): True when
    this call wrote it, False when it was already there (its delivery is queued by someone else). So an
    image's delivery is queued by its branch or by its job's end, never by both; the record (attempts 0,
    ``queued_at``) is what ``GET /jobs/{id}`` shows until the first attempt."""
    record = {
        "event": delivery.event,
        "index": delivery.index,
        "attempts": 0,
        "queued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now())),
    }
    return write_once(s3, bucket, record_key(delivery), record)


def claim_and_send(s3: Any, bucket: str, delivery: Delivery, send: Callable[[dict[str, Any]], None]) -> bool:
    """Queue ``delivery`` (``send`` its message) if this call claims it (:func:`claim`); a claim or a
    message that failed gives the claim back (the record is deleted, as far as it can be) and raises, so
    the delivery is queued again later (by the job's end, or the retried event). Returns whether it was
    queued."""
    try:
        if not claim(s3, bucket, delivery):
            return False
        send(delivery.message())
    except Exception:
        _give_back(s3, bucket, delivery)  # also a claim whose answer was lost: it may have been written
        raise
    return True


def _give_back(s3: Any, bucket: str, delivery: Delivery) -> None:
    with contextlib.suppress(Exception):  # the error that matters is the one being raised
        s3.delete_object(Bucket=bucket, Key=record_key(delivery))


def queue_image_delivery(
    item: Mapping[str, Any],
    record: Mapping[str, Any],
    *,
    s3: Any,
    bucket: str,
    send: Callable[[dict[str, Any]], None],
) -> bool:
    """Queue the ``image`` webhook of an image as its branch ends (``item``: the branch's Map item,
    ``record``: the branch's answer), if its job asked for one (``image_webhook``). Only outcomes of
    :data:`BRANCH_DELIVERED`; the record the delivery carries is the image's entry, as ``GET /jobs/{id}``
    shows it while the job runs. Returns whether it was queued; raises the AWS error of a claim or
    message that failed (the caller logs it: the job's end queues the image instead)."""
    arn = item.get("execution_arn")
    if not item.get("image_webhook") or not arn or record.get("status") not in BRANCH_DELIVERED:
        return False
    delivery = Delivery(str(arn), "image", int(record["index"]), image_entry(record))
    return claim_and_send(s3, bucket, delivery, send)


class DeliveryFailed(Exception):
    """An attempt that did not get a 2xx answer."""

    def __init__(self, status: int | None, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    network: WebhookNetwork,
    timeout: float = POST_TIMEOUT_SECONDS,
    resolver: Resolver = resolve,
) -> int:
    """POST ``body`` to ``url`` after checking it again: the connection goes to the address checked
    (TLS still verifies the host's name). Returns the 2xx status; raises :class:`DeliveryFailed`."""
    target = webhook_target(url, network=network, resolver=resolver)
    if isinstance(target, str):
        raise DeliveryFailed(None, f"webhook {target}")
    conn: http.client.HTTPConnection
    if target.scheme == "https":
        conn = _PinnedHTTPSConnection(target.host, target.port, target.address, timeout=timeout)
    else:
        conn = _PinnedHTTPConnection(target.host, target.port, target.address, timeout=timeout)
    try:
        conn.request(
            "POST",
            target.path,
            body=body,
            headers={"content-type": "application/json", "user-agent": "imagegen-webhooks", **headers},
        )
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryFailed(None, f"{type(exc).__name__}: {exc}"[:300]) from None
    finally:
        conn.close()
    if not 200 <= status < 300:
        raise DeliveryFailed(status, f"HTTP {status}")
    return status


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, *, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, *, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address
        self._ssl_context = ssl.create_default_context()

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._ssl_context.wrap_socket(raw, server_hostname=self.host)


STATUS_CHANGE = "Step Functions Execution Status Change"


def ended_execution(body: Mapping[str, Any]) -> str | None:
    """The execution ARN of a Step Functions status-change event (the deployed rule's message)."""
    if body.get("detail-type") != STATUS_CHANGE or not isinstance(body.get("detail"), Mapping):
        return None
    arn = body["detail"].get("executionArn")
    return str(arn) if arn else None


# -- records -----------------------------------------------------------------------------------------


def read_record(s3: Any, bucket: str, delivery: Delivery) -> dict[str, Any]:
    try:
        body = s3.get_object(Bucket=bucket, Key=record_key(delivery))["Body"].read()
    except s3.exceptions.NoSuchKey:
        return {"event": delivery.event, "index": delivery.index, "attempts": 0}
    return dict(json.loads(body))


def write_record(s3: Any, bucket: str, delivery: Delivery, record: Mapping[str, Any]) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=record_key(delivery),
        Body=json.dumps(record).encode(),
        ContentType="application/json",
    )


def job_webhooks(s3: Any, bucket: str, name: str) -> list[dict[str, Any]]:
    """The delivery records of execution ``name`` (``GET /jobs/{id}``'s ``webhooks``), images first."""
    prefix = f"{RECORDS_PREFIX}{name}/"
    records = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            records.append(json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()))
    fields = (
        "event",
        "index",
        "attempts",
        "queued_at",
        "last_status",
        "last_error",
        "delivered_at",
        "dead_lettered",
    )
    shown = [{k: r.get(k) for k in fields if k != "index" or r.get("index") is not None} for r in records]
    return sorted(shown, key=lambda r: (r["event"] == "completed", r.get("index") or 0))


@dataclass(frozen=True)
class Outcome:
    """What one attempt did: ``delivered``, ``retry`` (after ``delay`` seconds) or ``given_up``."""

    result: Literal["delivered", "retry", "given_up", "skipped"]
    delay: int = 0


def attempt(
    delivery: Delivery,
    *,
    url: str,
    body: Mapping[str, Any],
    secret: str,
    receive_count: int,
    s3: Any,
    bucket: str,
    network: WebhookNetwork,
    schedule: Sequence[int] = BACKOFF_SECONDS,
    max_attempts: int = MAX_ATTEMPTS,
    now: Callable[[], float] = time.time,
    resolver: Resolver = resolve,
    timeout: float = POST_TIMEOUT_SECONDS,
) -> Outcome:
    """Make attempt ``receive_count`` of ``delivery`` (POST ``body``, its :func:`payload`, signed),
    record it, and say what happens next."""
    record = read_record(s3, bucket, delivery)
    if record.get("delivered_at"):  # a message seen again after its success was recorded
        return Outcome("skipped")
    data = json.dumps(body, separators=(",", ":"), default=str).encode()
    headers = signature_headers(secret, delivery_id(delivery), data, timestamp=int(now()))
    record["attempts"] = int(record.get("attempts", 0)) + 1
    try:
        status = post(url, data, headers, network=network, resolver=resolver, timeout=timeout)
    except DeliveryFailed as failed:
        record.update(last_status=failed.status, last_error=failed.error)
        last = receive_count >= max_attempts
        record["dead_lettered"] = last
        write_record(s3, bucket, delivery, record)
        return Outcome("given_up") if last else Outcome("retry", backoff_seconds(receive_count, schedule))
    record.update(
        last_status=status,
        last_error=None,
        dead_lettered=False,
        delivered_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now())),
    )
    write_record(s3, bucket, delivery, record)
    return Outcome("delivered")
