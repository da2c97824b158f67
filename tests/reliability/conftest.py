"""Reliability suite fixtures: a folder per test, the deployed API's Lambda over the session's engine,
and the model calls a test made. The offline engine and the local API server are ``tests/conftest.py``'s;
the suite's helpers are in ``tests/reliability/support.py``."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.reliability.support import RELIABILITY_API_KEY_ID


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability_load: concurrent executions under faults (the CI-sized reliability run)"
    )


@pytest.fixture
def folder(request: pytest.FixtureRequest) -> str:
    """An output folder of this test alone, so its audit sees only its own objects."""
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")
    return f"rel/{name}-{uuid.uuid4().hex[:6]}"


def api_gateway_event(
    method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A REST API (Lambda proxy) event as API Gateway sends it, with an API key identity: the key's
    id (``RELIABILITY_API_KEY_ID``) is what API Gateway authenticated it as."""
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
            "identity": {
                "apiKey": headers.get("X-Api-Key"),
                "apiKeyId": RELIABILITY_API_KEY_ID,
                "sourceIp": "192.0.2.1",
            },
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
