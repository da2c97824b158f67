"""Handler logs: no secret ever (credentials, API keys, presigned-URL signatures); the prompt only at
DEBUG. Logs are captured from the handlers' Powertools loggers, formatted as Lambda would write them,
during real runs on the session engine, with distinctive credentials and an API key to look for."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from image_pipeline.core.clients import reset_clients
from image_pipeline.core.execution_input import ExecutionInput
from image_pipeline.core.tenancy import Caller, execution_name
from image_pipeline.handlers import build_manifest, generate_image, http_api, validate_request

from imagegen.standin.bedrock_server import FaultPlan
from tests.reliability.support import RELIABILITY_API_KEY_ID

HANDLER_LOGGERS = [validate_request.logger, generate_image.logger, build_manifest.logger, http_api.logger]
SMALL = {"model": "stable-image-core"}
SIGNED_URL_PARTS = ("X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "Signature=")


class Capture(logging.Handler):
    """Keeps every record as the handlers' own formatter writes it (JSON with the extra keys)."""

    def __init__(self, formatter: logging.Formatter | None) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class Secrets:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex.upper()
        self.access_key = f"AKIARELIABILITY{tag[:8]}"
        self.secret_key = f"reliability-secret-{tag}"
        self.token = f"reliability-token-{tag}"
        self.api_key = f"reliability-api-key-{tag}"

    def values(self) -> tuple[str, ...]:
        return (self.access_key, self.secret_key, self.token, self.api_key)


@pytest.fixture
def secrets(engine: Any) -> Iterator[Secrets]:
    """Distinctive credentials on boto3's default session, which the handlers' clients use."""
    values = Secrets()
    session = boto3._get_default_session()._session
    session.set_credentials(values.access_key, values.secret_key, values.token)
    reset_clients()
    yield values
    session.set_credentials("testing", "testing", "testing")
    reset_clients()


@pytest.fixture
def capture() -> Iterator[Any]:
    """``capture(level)``: handler logs at ``level`` (and the root logger at INFO) until the test ends."""
    saved = [(logger, logger.log_level) for logger in HANDLER_LOGGERS]
    stdlib = logging.getLogger(HANDLER_LOGGERS[0].name)
    captures: list[tuple[logging.Logger, Capture]] = []

    def start(level: str) -> Capture:
        for logger in HANDLER_LOGGERS:
            logger.setLevel(level)
        handler = Capture(HANDLER_LOGGERS[0].registered_formatter)
        stdlib.addHandler(handler)
        captures.append((stdlib, handler))
        root = Capture(None)
        root.setLevel(logging.INFO)
        logging.getLogger().addHandler(root)
        captures.append((logging.getLogger(), root))
        handler.root = root  # type: ignore[attr-defined]
        return handler

    yield start
    for logger, handler in captures:
        logger.removeHandler(handler)
    for logger, level in saved:
        logger.setLevel(level)


def _run(engine: Any, http_api: Any, prompt: str, secrets: Secrets) -> None:
    """A job (one image kept, one filtered), then GET /jobs/{id} through the deployed API's Lambda
    with an API key (its presigned URLs carry the session token), and a refused POST /images."""
    body = {"prompt": prompt, "negative_prompt": "fog", "count": 2, "seed": 40, **SMALL}
    engine.bedrock.faults = FaultPlan(block_output_seeds={41})
    # Started as the API would for the key's caller, so that GET /jobs/{id} with that key reaches it.
    caller, job_id = Caller("apiKey", RELIABILITY_API_KEY_ID), f"log-{uuid.uuid4().hex[:10]}"
    envelope = ExecutionInput(body, caller).to_document()
    result = engine.run(envelope, name=execution_name(caller, job_id), kind="jobs")
    assert result.status == "SUCCEEDED", result.message
    headers = {"Content-Type": "application/json", "X-Api-Key": secrets.api_key}
    status, job = http_api("GET", f"/jobs/{job_id}", headers=headers)
    assert status == 200 and job["manifest"]["status"] == "PARTIAL", job
    assert secrets.token in json.dumps(job)  # in the answer, never in the logs
    refused = json.dumps({**body, "count": 0}).encode()
    status, answer = http_api("POST", "/images", body=refused, headers=headers)
    assert status == 400, answer


def test_info_logs_have_no_prompt_and_no_secret(
    engine: Any, http_api: Any, secrets: Secrets, capture: Any
) -> None:
    logs = capture("INFO")
    prompt = f"a zebra named {uuid.uuid4().hex[:10]} grazing"
    _run(engine, http_api, prompt, secrets)
    text = logs.text + "\n" + logs.root.text
    for message in ("request planned", "image done", "manifest built", "job described"):
        assert message in logs.text, message
    assert "request answered with an error" in logs.text
    assert prompt not in text and "zebra named" not in text
    for secret in secrets.values():
        assert secret not in text
    for part in SIGNED_URL_PARTS:
        assert part not in text


def test_debug_logs_have_the_prompt_and_still_no_secret(
    engine: Any, http_api: Any, secrets: Secrets, capture: Any
) -> None:
    logs = capture("DEBUG")
    prompt = f"a zebra named {uuid.uuid4().hex[:10]} grazing"
    _run(engine, http_api, prompt, secrets)
    assert prompt in logs.text
    text = logs.text + "\n" + logs.root.text
    for secret in secrets.values():
        assert secret not in text
    for part in SIGNED_URL_PARTS:
        assert part not in text


def test_post_jobs_answers_202_with_info_logging(engine: Any, http_api: Any, capture: Any) -> None:
    capture("INFO")
    body = json.dumps({"prompt": "a job at INFO", "count": 1, **SMALL}).encode()
    status, answer = http_api("POST", "/jobs", body=body, headers={"Content-Type": "application/json"})
    assert status == 202, answer
