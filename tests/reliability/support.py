"""Helpers of the reliability suite: the ASL's retry policy, execution histories and their retry
waits, the manifest a run returned or stored, and the nothing-lost audit of one test's folder."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from image_pipeline.core.keys import namespace_prefix
from image_pipeline.core.tenancy import Caller, console_caller

from imagegen.runtime.engine import ExecutionResult, asl_path
from imagegen.testing.audit import AuditReport, audit_bucket

#: The API key id of the deployed Lambda's events in this suite (``http_api`` fixture): API Gateway's
#: id of the key, so their caller is ``Caller("apiKey", RELIABILITY_API_KEY_ID)``.
RELIABILITY_API_KEY_ID = "rel0key0id"


def generate_image_retriers() -> dict[str, dict[str, Any]]:
    """The ``Retry`` of the ``GenerateImage`` state, by error name."""
    definition = json.loads(asl_path().read_text())
    state = definition["States"]["GenerateImages"]["ItemProcessor"]["States"]["GenerateImage"]
    return {error: retrier for retrier in state["Retry"] for error in retrier["ErrorEquals"]}


def history(engine: Any, arn: str) -> list[dict[str, Any]]:
    """Every event of an execution, oldest first."""
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    while True:
        page = engine.sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def retry_waits(engine: Any, arn: str) -> list[float]:
    """Seconds between each failed task of an execution and the next scheduling of a task: the
    state machine's retry waits, read from the interpreter's history (one image per execution).
    A branch waiting for its model's admission slot waits on its task token (no failed task); an
    AcquireSlot that DynamoDB throttled fails with ``NoSlot`` and is asked again after its own backoff:
    not one of the waits measured."""
    waits: list[float] = []
    failed_at: datetime | None = None
    for event in history(engine, arn):
        if event["type"] == "TaskFailed":
            if event.get("taskFailedEventDetails", {}).get("error") == "NoSlot":
                continue
            failed_at = event["timestamp"]
        elif event["type"] == "TaskScheduled" and failed_at is not None:
            waits.append((event["timestamp"] - failed_at).total_seconds())
            failed_at = None
    return waits


def manifest_of(result: ExecutionResult) -> dict[str, Any]:
    """The manifest a succeeded run returned."""
    assert result.output is not None, f"{result.status} {result.error}: {result.message}"
    return result.output


def stored_manifest(engine: Any, result: ExecutionResult) -> dict[str, Any]:
    """The manifest a run stored (also for a failed run, whose output is empty)."""
    if result.output is not None:
        key = result.output["manifest_key"]
    else:
        key = result.message.split("Manifest: s3://", 1)[1].split("/", 1)[1]
    return json.loads(engine.s3.get_object(Bucket=engine.config.bucket, Key=key)["Body"].read())


def folder_prefix(folder: str, caller: Caller | None = None) -> str:
    """Where one test's output ``folder`` is stored for ``caller`` (default the console's, the caller
    of a bare request such as ``engine.start_execution`` gives): ``<namespace>/<folder>/``."""
    return f"{namespace_prefix((caller or console_caller()).namespace)}{folder}/"


def audit(
    engine: Any, folder: str, returned: list[dict[str, Any]] | None = None, caller: Caller | None = None
) -> AuditReport:
    """The nothing-lost audit of one test's folder, as ``caller`` stored it (default the console)."""
    prefix = folder_prefix(folder, caller)
    return audit_bucket(engine.s3, engine.config.bucket, prefix=prefix, returned=returned or [])
