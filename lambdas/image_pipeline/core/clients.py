"""AWS clients, created once per container (or per offline engine) and shared by threads.

Every client sets its connect timeout, read timeout and attempts explicitly, from
:mod:`image_pipeline.core.time_budget`, which adds them up into each function's worst case (an SDK's
defaults differ between versions: 60 s timeouts, and legacy or standard retries). Retries are
botocore's own ``standard`` mode: exponential backoff with full jitter on throttling and transient
errors, read and connect timeouts included. The state machine adds a second, slower layer for the
errors that survive it. Endpoints follow the standard ``AWS_ENDPOINT_URL_<SERVICE>`` variables, which
is how the offline runtime points the same code at its local servers.

Presigned URLs are signed for the bucket's Regional endpoint, ``https://<bucket>.s3.<region>.amazonaws.com``
(:func:`s3_config`). botocore's default presigns for the global endpoint ``<bucket>.s3.amazonaws.com``
(and with SigV2 where S3 still takes it, unless ``signature_version="s3v4"``); for up to 24 hours after a
bucket is created outside us-east-1, S3 may answer that host with a 307 redirect, and the redirected
request fails its signature: "send requests only to the Regional endpoint that's in the same Region as
your S3 bucket" (https://repost.aws/knowledge-center/s3-http-307-response, read 2026-11-30). In
botocore 1.44.8 (``signers.py``, ``_should_use_global_endpoint``), ``addressing_style="virtual"`` gives
the Regional host in every Region but us-east-1, and ``us_east_1_regional_endpoint="regional"`` there
too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from image_pipeline.core import time_budget
from image_pipeline.core.image_index import ImageIndex
from image_pipeline.core.lasting_links import deployment_secret, link_settings
from image_pipeline.core.settings import get_settings
from image_pipeline.core.spend import SpendLedger
from image_pipeline.core.time_budget import ClientTimeouts
from image_pipeline.core.webhooks import WebhookSettings

#: Variables that point S3 at another endpoint (botocore's own names): keep its addressing then.
S3_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def client_config(timeouts: ClientTimeouts, **extra: Any) -> Config:
    """A botocore ``Config`` with ``timeouts``, in ``standard`` retry mode."""
    return Config(
        retries={"mode": "standard", "total_max_attempts": timeouts.attempts},
        connect_timeout=timeouts.connect,
        read_timeout=timeouts.read,
        **extra,
    )


def s3_config(environ: Mapping[str, str] | None = None) -> Config:
    """The S3 client's configuration: SigV4, and presigned URLs for the bucket's Regional endpoint.

    With an S3 endpoint of one's own (``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, for example a
    local S3), botocore's own addressing is kept: virtual-hosted names such as
    ``<bucket>.localhost`` need not resolve, and botocore uses path-style URLs for such endpoints.
    """
    env = os.environ if environ is None else environ
    s3_options: dict[str, str] = {"us_east_1_regional_endpoint": "regional"}
    if not any(env.get(name) for name in S3_ENDPOINT_VARIABLES):
        s3_options["addressing_style"] = "virtual"
    return client_config(time_budget.S3, signature_version="s3v4", s3=s3_options, max_pool_connections=50)


@cache
def bedrock_runtime() -> Any:
    """The Bedrock Runtime client: ``BEDROCK_READ_TIMEOUT_SECONDS`` and ``BEDROCK_MAX_ATTEMPTS``."""
    return boto3.client(
        "bedrock-runtime",
        config=client_config(time_budget.bedrock(get_settings()), max_pool_connections=50),
    )


@cache
def s3() -> Any:
    """The S3 client (SigV4 and the Regional endpoint, so presigned URLs work from the first day, with
    KMS, in every Region)."""
    return boto3.client("s3", config=s3_config())


@cache
def stepfunctions() -> Any:
    """The Step Functions client of the HTTP API: StartExecution (a retry is harmless: the execution
    name makes it idempotent), DescribeExecution, GetExecutionHistory."""
    return boto3.client("stepfunctions", config=client_config(time_budget.STEPFUNCTIONS))


@cache
def stepfunctions_poll() -> Any:
    """The Step Functions client with which a synchronous route polls its job (DescribeExecution): one
    short attempt, so a slow answer cannot eat the route's wait (the next poll asks again)."""
    return boto3.client("stepfunctions", config=client_config(time_budget.STEPFUNCTIONS_POLL))


@cache
def admission_dynamodb() -> Any:
    """The DynamoDB client of admission control (``core/admission.py``): one short attempt
    (``time_budget.ADMISSION_DYNAMODB``; every step is conditional and the state machine retries)."""
    return boto3.client("dynamodb", config=client_config(time_budget.ADMISSION_DYNAMODB))


@cache
def admission_stepfunctions() -> Any:
    """The Step Functions client that wakes a waiting branch (``SendTaskSuccess``): one short attempt."""
    return boto3.client("stepfunctions", config=client_config(time_budget.ADMISSION_NOTIFY))


@cache
def admission_s3() -> Any:
    """The S3 client that looks for a waiting branch's cancellation marker: one short attempt."""
    return boto3.client("s3", config=client_config(time_budget.ADMISSION_DYNAMODB))


@cache
def index_dynamodb() -> Any:
    """The DynamoDB resource of the image index (one short attempt: ``time_budget.INDEX_DYNAMODB``)."""
    return boto3.resource("dynamodb", config=client_config(time_budget.INDEX_DYNAMODB))


@cache
def webhook_sqs() -> Any:
    """The image function's SQS client: it queues an image's webhook delivery (one short attempt)."""
    return boto3.client("sqs", config=client_config(time_budget.WEBHOOK_QUEUEING))


@cache
def webhook_s3() -> Any:
    """The image function's S3 client for its webhook delivery's record (one short attempt)."""
    return boto3.client("s3", config=client_config(time_budget.WEBHOOK_QUEUEING, signature_version="s3v4"))


@cache
def webhook_queue_url() -> str:
    """The webhook delivery queue (``WEBHOOK_QUEUE_URL``); empty: this function queues no deliveries."""
    return WebhookSettings.from_environ().queue_url


def image_index() -> ImageIndex | None:
    """The image index of this deployment (``core/image_index.py``), or None when it has none."""
    settings = get_settings()
    if not settings.index_table:
        return None
    return ImageIndex(
        index_dynamodb().Table(settings.index_table),
        expiration_days=settings.image_expiration_days,
        share_cache=settings.share_cache,
    )


@cache
def ledger_dynamodb() -> Any:
    """The DynamoDB client of the spend ledger (``core/spend.py``): one short attempt
    (``time_budget.LEDGER_DYNAMODB``)."""
    return boto3.client("dynamodb", config=client_config(time_budget.LEDGER_DYNAMODB))


def spend_ledger() -> SpendLedger | None:
    """The daily spend ledger of this deployment (in the image index's table), or None without one."""
    settings = get_settings()
    if not settings.index_table:
        return None
    return SpendLedger(
        ledger_dynamodb(),
        settings.index_table,
        default_limit_usd=settings.daily_spend_limit_usd,
        default_model=settings.default_model,
    )


def reset_clients() -> None:
    """Forget the cached clients and settings (after the environment changed: tests, offline engine)."""
    for factory in (
        bedrock_runtime,
        s3,
        stepfunctions,
        stepfunctions_poll,
        index_dynamodb,
        admission_dynamodb,
        webhook_sqs,
        webhook_s3,
        webhook_queue_url,
        ledger_dynamodb,
        admission_stepfunctions,
        admission_s3,
    ):
        factory.cache_clear()
    get_settings.cache_clear()
    link_settings.cache_clear()
    deployment_secret.cache_clear()
