"""Reliability suite fixtures: the session's offline engine (``tests/conftest.py``), the local API
server of the e2e suite, and helpers to read the ASL's retry policy and execution histories."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from imagegen.runtime.engine import ExecutionResult, asl_path
from imagegen.testing.audit import AuditReport, audit_bucket
from tests.e2e.conftest import api, count_executions, local_server

__all__ = ["api", "count_executions", "local_server"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability_load: concurrent executions under faults (the CI-sized reliability run)"
    )


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
    state machine's retry waits, read from the interpreter's history (one image per execution)."""
    waits: list[float] = []
    failed_at: datetime | None = None
    for event in history(engine, arn):
        if event["type"] == "TaskFailed":
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


def audit(engine: Any, folder: str, returned: list[dict[str, Any]] | None = None) -> AuditReport:
    """The nothing-lost audit of one test's folder."""
    return audit_bucket(engine.s3, engine.config.bucket, prefix=f"{folder}/", returned=returned or [])


@pytest.fixture
def folder(request: pytest.FixtureRequest) -> str:
    """An output folder of this test alone, so its audit sees only its own objects."""
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")
    return f"rel/{name}-{uuid.uuid4().hex[:6]}"


def api_gateway_event(
    method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A REST API (Lambda proxy) event as API Gateway sends it, with an API key identity."""
    headers = dict(headers or {})
    text, encoded = None, False
    if body is not None:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:  # API Gateway passes what is not text as base64
            text, encoded = base64.b64encode(body).decode("ascii"), True
    resource = "/jobs/{job_id}" if path.startswith("/jobs/") else path
    job_id = path.rsplit("/", 1)[1] if resource == "/jobs/{job_id}" else None
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"job_id": job_id} if job_id else None,
        "stageVariables": None,
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "resourcePath": resource,
            "httpMethod": method,
            "stage": "prod",
            "path": f"/prod{path}",
            "identity": {"apiKey": headers.get("X-Api-Key"), "sourceIp": "192.0.2.1"},
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


@pytest.fixture
def http_api(engine: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``http_api(method, path, body=..., headers=...)`` -> (status, JSON body): the deployed API's
    Lambda (``image_pipeline.handlers.http_api``) over the session engine's state machines."""
    from image_pipeline.handlers import http_api as module

    from imagegen.runtime.lambda_router import LambdaContext

    monkeypatch.setenv("JOBS_STATE_MACHINE_ARN", engine.state_machines["jobs"])
    monkeypatch.setenv("SYNC_STATE_MACHINE_ARN", engine.state_machines["sync"])
    module.environment.cache_clear()

    def call(method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        event = api_gateway_event(method, path, **kwargs)
        response = module.handler(event, LambdaContext(function_name="imagegen-http-api"))
        return response["statusCode"], json.loads(response["body"]) if response.get("body") else None

    yield call
    module.environment.cache_clear()


@pytest.fixture
def calls(engine: Any) -> Iterator[Any]:
    """Model calls made during the test: ``calls()`` -> the server's entries since the start."""
    start = engine.bedrock.invocations

    def since() -> int:
        return engine.bedrock.invocations - start

    yield since
