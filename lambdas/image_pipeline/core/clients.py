"""AWS clients, created once per container (or per offline engine) and shared by threads.

Retries are botocore's own ``standard`` mode: exponential backoff with full jitter on throttling and
transient errors, bounded by ``BEDROCK_MAX_ATTEMPTS``. The state machine adds a second, slower layer
for the errors that survive it. Endpoints follow the standard ``AWS_ENDPOINT_URL_<SERVICE>``
variables, which is how the offline runtime points the same code at its local servers.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from image_pipeline.core.settings import get_settings


@cache
def bedrock_runtime() -> Any:
    """The Bedrock Runtime client."""
    settings = get_settings()
    config = Config(
        retries={"mode": "standard", "total_max_attempts": settings.bedrock_max_attempts},
        connect_timeout=5,
        read_timeout=settings.bedrock_read_timeout_seconds,
        max_pool_connections=50,
    )
    return boto3.client("bedrock-runtime", config=config)


@cache
def s3() -> Any:
    """The S3 client (SigV4, so presigned URLs work with KMS and in every Region)."""
    config = Config(
        signature_version="s3v4",
        retries={"mode": "standard", "total_max_attempts": 5},
        max_pool_connections=50,
    )
    return boto3.client("s3", config=config)


@cache
def stepfunctions() -> Any:
    """The Step Functions client of the HTTP API: StartExecution (a retry is harmless: the execution
    name makes it idempotent), DescribeExecution, GetExecutionHistory."""
    return boto3.client("stepfunctions", config=Config(retries={"mode": "standard"}))


@cache
def stepfunctions_sync(read_timeout: int) -> Any:
    """The Step Functions client for StartSyncExecution, which answers when the execution ends.

    One attempt: botocore would retry a read timeout, starting a second execution (and paying for its
    images again). ``read_timeout`` (seconds) is how long the caller can wait.
    """
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=read_timeout
    )
    return boto3.client("stepfunctions", config=config)


def reset_clients() -> None:
    """Forget the cached clients and settings (after the environment changed: tests, offline engine)."""
    for factory in (bedrock_runtime, s3, stepfunctions, stepfunctions_sync):
        factory.cache_clear()
    get_settings.cache_clear()
