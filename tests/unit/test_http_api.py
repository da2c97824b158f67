"""The HTTP API Lambda (``image_pipeline.handlers.http_api``), called with API Gateway proxy events
(``tests/events/apigw_*.json``) against a moto Standard state machine, which every route starts (the
synchronous ones wait for it) and reads; the job routes and the handoff: test_http_api_jobs.py."""

from __future__ import annotations

import base64
import copy
import functools
import importlib
import io
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from image_pipeline.core import clients
from image_pipeline.core.execution_input import ExecutionInput
from image_pipeline.core.jobs import execution_document
from image_pipeline.core.tenancy import Caller, execution_name
from moto import mock_aws

from imagegen.runtime.lambda_router import LambdaContext
from tests.support import load_event
from tests.unit.job_data import FILTERED_CAUSE, stale_manifest

REGION, ACCOUNT = "us-west-2", "123456789012"  # the Region of the aws_credentials fixture
BUCKET = "http-api-bucket"
JOBS_NAME = "imagegen-jobs-http-api-test"
JOBS_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{JOBS_NAME}"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/test"
API_KEY = "EXAMPLE-api-key-0123456789abcdef"  # the x-api-key of the canonical events
#: The caller of the canonical events: API Gateway's id of that key (requestContext.identity.apiKeyId).
CALLER = Caller("apiKey", "k1a2b3c4d5")
STALE_MANIFEST = stale_manifest(BUCKET)
#: A request the JSON schema (so API Gateway) accepts and Titan Image Generator v2 does not:
#: 1000x1000 is not one of its sizes.
TITAN_WRONG_SIZE = {"prompt": "x", "model": "titan-image-v2", "width": 1000, "height": 1000}


# -- events ----------------------------------------------------------------------------------------


def api_event(
    name: str,
    *,
    body: Any = None,
    headers: dict[str, str | None] | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A canonical event of ``tests/events/<name>.json``; ``body`` (a value: JSON; bytes/str: as is),
    ``headers`` (None removes one) and ``query`` replace its own."""
    event: dict[str, Any] = copy.deepcopy(load_event(name))
    if body is not None:
        event["body"] = (
            body.decode() if isinstance(body, bytes) else body if isinstance(body, str) else json.dumps(body)
        )
    for header, value in (headers or {}).items():
        for field in ("headers", "multiValueHeaders"):
            for existing in [k for k in event[field] if k.lower() == header.lower()]:
                del event[field][existing]
        if value is not None:
            event["headers"][header] = value
            event["multiValueHeaders"][header] = [value]
    if query is not None:
        event["queryStringParameters"] = query or None
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} or None
    return event


def request_id(event: dict[str, Any]) -> str:
    return str(event["requestContext"]["requestId"])


def envelope(request: Any, caller: Caller = CALLER) -> str:
    """The execution input the API starts a run of ``caller`` with."""
    return execution_document(ExecutionInput(request, caller).to_document())


# -- fixtures --------------------------------------------------------------------------------------


def _jobs_state_machine(sfn: Any) -> None:
    """Succeeds with a (stale) manifest, or fails like the workflow does, depending on the input."""
    definition = {
        "StartAt": "Route",
        "States": {
            "Route": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.request.outcome", "StringEquals": "fail", "Next": "Failed"}],
                "Default": "Done",
            },
            "Done": {"Type": "Pass", "Result": STALE_MANIFEST, "End": True},
            "Failed": {"Type": "Fail", "Error": "AllImagesFiltered", "Cause": FILTERED_CAUSE},
        },
    }
    sfn.create_state_machine(name=JOBS_NAME, definition=json.dumps(definition), roleArn=ROLE, type="STANDARD")


@pytest.fixture
def http_api(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch, fresh_clients: None
) -> Iterator[tuple[Any, Any]]:
    """The handler module and a moto Step Functions client with the jobs state machine."""
    monkeypatch.setenv("IMAGES_BUCKET", BUCKET)
    monkeypatch.setenv("PRESIGN_EXPIRY_SECONDS", "900")
    monkeypatch.setenv("ALLOWED_MODELS", "nova-canvas,stable-image-core,titan-image-v2")
    monkeypatch.setenv("DEFAULT_MODEL", "stable-image-core")
    monkeypatch.setenv("MAX_IMAGES_PER_REQUEST", "8")
    monkeypatch.setenv("JOBS_STATE_MACHINE_ARN", JOBS_ARN)
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        clients.reset_clients()
        module = importlib.import_module("image_pipeline.handlers.http_api")
        module.environment.cache_clear()
        sfn = boto3.client("stepfunctions", region_name=REGION)
        if JOBS_ARN not in {m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}:
            _jobs_state_machine(sfn)  # inside another test's live mock (the session engine) it may exist
        s3 = boto3.client("s3", region_name=REGION)
        if BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:  # a running job's cancellation
            s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield module, sfn
        module.environment.cache_clear()


def call(module: Any, event: dict[str, Any], context: LambdaContext) -> tuple[int, Any, dict[str, list[str]]]:
    """Status, JSON body and headers of the handler's proxy response."""
    response = module.handler(event, context)
    headers = response["multiValueHeaders"]
    assert headers["Content-Type"] == ["application/json"]
    return response["statusCode"], json.loads(response["body"]), headers


def executions(sfn: Any) -> int:
    return len(sfn.list_executions(stateMachineArn=JOBS_ARN)["executions"])


def finish(sfn: Any, job_id: str, caller: Caller = CALLER) -> None:
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{JOBS_NAME}:{execution_name(caller, job_id)}"
    deadline = time.monotonic() + 10
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the test execution did not finish"
        time.sleep(0.02)


def new_key() -> str:
    """An idempotency key no other test used (moto keeps executions while the session engine runs)."""
    return f"order-{uuid.uuid4().hex[:12]}"


# -- POST /jobs ------------------------------------------------------------------------------------


def test_post_jobs_starts_a_job_named_by_the_idempotency_key(
    http_api: tuple[Any, Any], lambda_context: LambdaContext
) -> None:
    module, sfn = http_api
    key = new_key()
    event = api_event("apigw_post_jobs", headers={"Idempotency-Key": key})
    status, body, headers = call(module, event, lambda_context)
    assert status == 202
    assert body == {"job_id": key, "status": "running", "status_url": f"/jobs/{key}"}
    # The Location header is this request's path (with the stage) plus the job id.
    assert headers["Location"] == [f"/v1/jobs/{key}"]
    # Named and started for the caller API Gateway authenticated (the key's id, not the key).
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{JOBS_NAME}:{CALLER.namespace}-{key}"
    started = json.loads(sfn.describe_execution(executionArn=arn)["input"])
    assert started == {
        "request": {"prompt": "a lighthouse at dusk", "count": 2, "idempotency_key": key},
        "caller": {"kind": "apiKey", "id": "k1a2b3c4d5"},
    }


def test_post_jobs_without_a_key_is_a_new_job_each_time(
    http_api: tuple[Any, Any], lambda_context: LambdaContext
) -> None:
    module, sfn = http_api
    before = executions(sfn)
    event = api_event("apigw_post_jobs", headers={"Idempotency-Key": None})
    first = call(module, event, lambda_context)[1]["job_id"]
    second = call(module, event, lambda_context)[1]["job_id"]
    assert first != second and len(first) == 36
    assert executions(sfn) == before + 2


def test_post_jobs_replays_the_job_after_it_finished_and_refuses_another_request(
    http_api: tuple[Any, Any], lambda_context: LambdaContext
) -> None:
    module, sfn = http_api
    key = new_key()
    request = {"prompt": "a lighthouse at dusk", "count": 2}
    before = executions(sfn)
    first = call(
        module, api_event("apigw_post_jobs", body=request, headers={"Idempotency-Key": key}), lambda_context
    )
    assert first[0] == 202
    finish(sfn, key)  # once closed, moto (like Step Functions) refuses the name: ExecutionAlreadyExists

    # The same request, the key in the body this time: the same job, with its current status.
    replay = api_event(
        "apigw_post_jobs", body={**request, "idempotency_key": key}, headers={"Idempotency-Key": None}
    )
    status, body, headers = call(module, replay, lambda_context)
    assert status == 202 and body == {"job_id": key, "status": "succeeded", "status_url": f"/jobs/{key}"}
    assert headers["Location"] == [f"/v1/jobs/{key}"]

    other = api_event("apigw_post_jobs", body={**request, "count": 3}, headers={"Idempotency-Key": key})
    status, body, _ = call(module, other, lambda_context)
    assert status == 409 and body["error"] == "IdempotencyKeyReused" and key in body["message"]
    assert executions(sfn) == before + 1


def test_post_jobs_header_and_body_keys_must_agree(
    http_api: tuple[Any, Any], lambda_context: LambdaContext
) -> None:
    module, sfn = http_api
    before = executions(sfn)
    event = api_event(
        "apigw_post_jobs", body={"prompt": "x", "idempotency_key": "a-1"}, headers={"Idempotency-Key": "b-2"}
    )
    status, body, _ = call(module, event, lambda_context)
    assert status == 400 and body["details"][0]["field"] == "idempotency_key"
    assert executions(sfn) == before


#: (id, body, Content-Type, status, field): each answered before any Step Functions call.
INVALID: list[tuple[str, Any, str, int, str]] = [
    ("model limit: titan sizes", TITAN_WRONG_SIZE, "application/json", 400, "width"),
    (
        "model limit: nova multiple of 16",
        {"prompt": "x", "model": "nova-canvas", "width": 1000, "height": 1000},
        "application/json",
        400,
        "width",
    ),
    (
        "model limit: titan prompt length",
        {"prompt": "x" * 600, "model": "titan-image-v2"},
        "application/json",
        400,
        "prompt",
    ),
    (
        "option the model does not take",
        {"prompt": "x", "model": "stable-image-core", "quality": "premium"},
        "application/json",
        400,
        "quality",
    ),
    ("deployment maximum", {"prompt": "x", "count": 9}, "application/json", 400, "count"),
    ("model not offered", {"prompt": "x", "model": "titan-image-v1"}, "application/json", 400, "model"),
    ("not JSON", "prompt=a cat", "application/json", 400, "body"),
    ("not an object", ["a cat"], "application/json", 400, "request"),
    ("wrong content type", {"prompt": "x"}, "text/plain", 415, "Content-Type"),
    ("no content type", {"prompt": "x"}, "", 415, "Content-Type"),
    ("body over 64 KiB", {"prompt": "x", "style": " " * 70_000}, "application/json", 413, "body"),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"), [pytest.param(*case[1:], id=case[0]) for case in INVALID]
)
def test_invalid_jobs_are_answered_before_any_execution(
    http_api: tuple[Any, Any],
    lambda_context: LambdaContext,
    body: Any,
    content_type: str,
    status: int,
    field: str,
) -> None:
    module, sfn = http_api
    before = executions(sfn)
    event = api_event(
        "apigw_post_jobs",
        body=body,
        headers={"Content-Type": content_type or None, "Idempotency-Key": new_key()},
    )
    answered, error, _ = call(module, event, lambda_context)
    assert answered == status and error["error"] == "InvalidRequest"
    assert field in {d["field"] for d in error["details"]} and field in error["message"]
    assert executions(sfn) == before  # zero executions started


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"), [pytest.param(*case[1:], id=case[0]) for case in INVALID]
)
def test_invalid_sync_requests_start_nothing(
    http_api: tuple[Any, Any],
    lambda_context: LambdaContext,
    body: Any,
    content_type: str,
    status: int,
    field: str,
) -> None:
    module, sfn = http_api
    before = executions(sfn)
    event = api_event("apigw_post_images", body=body, headers={"Content-Type": content_type or None})
    answered, error, _ = call(module, event, lambda_context)
    assert answered == status and field in {d["field"] for d in error["details"]}
    assert executions(sfn) == before


def test_the_size_limit_counts_bytes_of_a_base64_body(
    http_api: tuple[Any, Any], lambda_context: LambdaContext
) -> None:
    # 33,000 characters, 66,000 bytes in UTF-8: over 64 KiB
    raw = json.dumps({"prompt": "é" * 33_000}, ensure_ascii=False).encode()
    event = api_event("apigw_post_images", body=base64.b64encode(raw).decode())
    event["isBase64Encoded"] = True
    status, error, _ = call(http_api[0], event, lambda_context)
    assert status == 413 and error["details"][0]["field"] == "body"


# -- POST /images, GET /images ---------------------------------------------------------------------


def started_input(sfn: Any, job_id: str) -> str:
    """The input of ``CALLER``'s job ``job_id`` as Step Functions stored it."""
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{JOBS_NAME}:{execution_name(CALLER, job_id)}"
    return str(sfn.describe_execution(executionArn=arn)["input"])


def test_post_images_runs_a_job_and_returns_the_manifest(
    http_api: tuple[Any, Any], lambda_context: LambdaContext
) -> None:
    module, sfn = http_api
    event = api_event("apigw_post_images")
    status, body, _ = call(module, event, lambda_context)
    assert status == 200
    # A job of the Standard workflow: the caller's namespace and the API request id (the request's
    # S3 folder), its input the envelope (test_http_api_jobs.py: the wait, the handoff).
    assert started_input(sfn, request_id(event)) == envelope({"prompt": "a red porsche", "count": 2})
    # The manifest, with its URLs signed anew and a download URL added to each stored image.
    stored, filtered = body["images"]
    # Signed for the bucket's Regional endpoint (image_pipeline.core.clients.s3_config).
    regional = f"https://{BUCKET}.s3.{os.environ['AWS_REGION']}.amazonaws.com"
    assert stored["url"].startswith(f"{regional}/images/ok-1/image-00-7.png?")
    assert "X-Amz-Expires=900" in stored["url"] and "content-disposition" not in stored["url"]
    assert "response-content-disposition=attachment" in stored["download_url"]
    assert filtered == STALE_MANIFEST["images"][1]
    unsigned = {k: v for k, v in body.items() if k not in {"images", "urls_expire_at"}}
    assert unsigned == {k: v for k, v in STALE_MANIFEST.items() if k not in {"images", "urls_expire_at"}}
    assert body["urls_expire_at"] > STALE_MANIFEST["urls_expire_at"]


def test_get_images_takes_the_request_from_the_query_string(
    http_api: tuple[Any, Any], lambda_context: LambdaContext
) -> None:
    module, sfn = http_api
    event = api_event("apigw_get_images")
    assert call(module, event, lambda_context)[0] == 200
    expected = envelope({"prompt": "a red porsche", "count": 2, "model": "stable-image-core"})
    assert started_input(sfn, request_id(event)) == expected


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"prompt": "x", "count": "many"}, "count"),
        ({"prompt": "x", "model": "titan-image-v2", "width": "1000", "height": "1000"}, "width"),
        ({"prompt": "x", "colour": "red"}, "colour"),
    ],
)
def test_get_images_invalid_query_is_400_without_a_call(
    http_api: tuple[Any, Any],
    lambda_context: LambdaContext,
    query: dict[str, str],
    field: str,
) -> None:
    before = executions(http_api[1])
    status, error, _ = call(http_api[0], api_event("apigw_get_images", query=query), lambda_context)
    assert status == 400 and field in {d["field"] for d in error["details"]}
    assert executions(http_api[1]) == before


def test_get_images_with_a_name_given_twice_is_400_without_a_call(
    http_api: tuple[Any, Any], lambda_context: LambdaContext
) -> None:
    event = api_event("apigw_get_images")
    # API Gateway keeps the last value in queryStringParameters; the multi-value form has both.
    event["queryStringParameters"] = {"prompt": "b"}
    event["multiValueQueryStringParameters"] = {"prompt": ["a", "b"]}
    status, error, _ = call(http_api[0], event, lambda_context)
    assert status == 400 and error["details"] == [
        {"field": "prompt", "message": "given twice; send each field once"}
    ]


def test_the_poll_client_makes_one_short_attempt(http_api: tuple[Any, Any]) -> None:
    """A synchronous route polls its job with a client that cannot eat its wait: one attempt, short
    timeouts (a failed poll is made again at the next step; test_job_control.py)."""
    config = clients.stepfunctions_poll().meta.config
    assert config.retries["total_max_attempts"] == 1
    assert (config.connect_timeout, config.read_timeout) == (1, 2)


# -- GET /jobs/{id} ---------------------------------------------------------------------------------


def get_job_event(job_id: str) -> dict[str, Any]:
    event = api_event("apigw_get_job")
    event["path"] = f"/jobs/{job_id}"
    event["pathParameters"] = {"id": job_id}
    event["requestContext"]["path"] = f"/v1/jobs/{job_id}"
    return event


def test_succeeded_job_has_fresh_urls(http_api: tuple[Any, Any], lambda_context: LambdaContext) -> None:
    module, sfn = http_api
    job_id = new_key()
    sfn.start_execution(stateMachineArn=JOBS_ARN, name=execution_name(CALLER, job_id), input=envelope({}))
    finish(sfn, job_id)
    status, job, _ = call(module, get_job_event(job_id), lambda_context)
    assert status == 200 and job["job_id"] == job_id and job["status"] == "succeeded"
    assert job["started_at"] and job["stopped_at"] and "progress" not in job
    url = job["manifest"]["images"][0]["url"]
    assert url.startswith(
        f"https://{BUCKET}.s3.{os.environ['AWS_REGION']}.amazonaws.com/images/ok-1/image-00-7.png?"
    )
    assert "X-Amz-Expires=900" in url and "X-Amz-Signature=" in url


def test_failed_job_has_the_error(http_api: tuple[Any, Any], lambda_context: LambdaContext) -> None:
    module, sfn = http_api
    job_id = new_key()
    name = execution_name(CALLER, job_id)
    sfn.start_execution(stateMachineArn=JOBS_ARN, name=name, input=envelope({"outcome": "fail"}))
    finish(sfn, job_id)
    status, job, _ = call(module, get_job_event(job_id), lambda_context)
    assert status == 200 and job["status"] == "failed" and "manifest" not in job
    assert job["error"] == {
        "error": "AllImagesFiltered",
        "message": "No image was generated (CONTENT_FILTERED_INPUT x2)",
    }


def test_the_canonical_get_job_event_finds_its_job(
    http_api: tuple[Any, Any], lambda_context: LambdaContext
) -> None:
    status, body, _ = call(http_api[0], api_event("apigw_get_job"), lambda_context)
    assert status == 404 and body["error"] == "JobNotFound" and "order-7f3a" in body["message"]


@pytest.mark.parametrize(("job_id", "status"), [("never-started", 404), ("bad$id", 400), ("x" * 90, 400)])
def test_unknown_job_is_404_and_malformed_400(
    http_api: tuple[Any, Any], lambda_context: LambdaContext, job_id: str, status: int
) -> None:
    answered, body, _ = call(http_api[0], get_job_event(job_id), lambda_context)
    assert answered == status
    assert body["error"] == ("JobNotFound" if status == 404 else "InvalidRequest")


def test_running_job_reports_progress(
    http_api: tuple[Any, Any], lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = http_api[0]
    stubbed = boto3.client("stepfunctions", region_name=REGION)
    name = execution_name(CALLER, "run-1")
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{JOBS_NAME}:{name}"
    kinds = ["ExecutionStarted", "MapStateStarted", "MapIterationSucceeded", "MapIterationSucceeded"]
    history = [{"timestamp": datetime.now(UTC), "type": t, "id": i + 1} for i, t in enumerate(kinds)]
    history[1]["mapStateStartedEventDetails"] = {"length": 4}
    with Stubber(stubbed) as stub:
        described = {
            "executionArn": arn,
            "stateMachineArn": JOBS_ARN,
            "name": name,
            "status": "RUNNING",
            "startDate": datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
            "input": envelope({"prompt": "x"}),
        }
        stub.add_response("describe_execution", described, {"executionArn": arn})
        stub.add_response(
            "get_execution_history", {"events": history}, {"executionArn": arn, "maxResults": 1000}
        )
        monkeypatch.setattr(clients, "stepfunctions", functools.cache(lambda: stubbed))
        status, job, _ = call(module, get_job_event("run-1"), lambda_context)
        stub.assert_no_pending_responses()
    assert status == 200 and job["status"] == "running"
    assert job["progress"] == {"total": 4, "done": 2, "failed": 0}


# -- GET /models, the rest -------------------------------------------------------------------------


def test_models_lists_the_deployment(http_api: tuple[Any, Any], lambda_context: LambdaContext) -> None:
    status, body, _ = call(http_api[0], api_event("apigw_get_models"), lambda_context)
    assert status == 200 and body["default_model"] == "stable-image-core"
    enabled = sorted(m["id"] for m in body["models"] if m["enabled"])
    assert enabled == ["nova-canvas", "stable-image-core", "titan-image-v2"]


def test_unknown_route_is_404_in_the_error_shape(
    http_api: tuple[Any, Any], lambda_context: LambdaContext
) -> None:
    event = api_event("apigw_get_models")
    event["path"] = event["resource"] = "/nothing"
    status, body, _ = call(http_api[0], event, lambda_context)
    assert status == 404 and body["error"] == "NotFound"


def test_a_bad_configuration_fails_loudly(
    http_api: tuple[Any, Any], lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBS_STATE_MACHINE_ARN", "not-an-arn")
    http_api[0].environment.cache_clear()
    with pytest.raises(RuntimeError, match="Invalid handler configuration"):
        http_api[0].handler(api_event("apigw_get_models"), lambda_context)


@pytest.mark.parametrize(
    ("origins", "origin", "allowed"),
    [
        ("https://a.example.com,https://b.example.com", "https://b.example.com", "https://b.example.com"),
        ("https://a.example.com,https://b.example.com", "https://evil.example.com", None),
        ("*", "https://any.example.com", "*"),
    ],
)
def test_cors_allows_the_configured_origins(
    http_api: tuple[Any, Any],
    lambda_context: LambdaContext,
    monkeypatch: pytest.MonkeyPatch,
    origins: str,
    origin: str,
    allowed: str | None,
) -> None:
    module = http_api[0]
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", origins)
    try:
        importlib.reload(module)  # the resolver reads its CORS configuration at import (cold start)
        headers = call(module, api_event("apigw_get_models", headers={"Origin": origin}), lambda_context)[2]
    finally:
        monkeypatch.delenv("CORS_ALLOW_ORIGINS")
        importlib.reload(module)
    assert headers.get("Access-Control-Allow-Origin") == ([allowed] if allowed else None)
    assert headers["Vary"] == ["Origin"]
    assert "Access-Control-Allow-Origin" not in call(module, api_event("apigw_get_models"), lambda_context)[2]
    assert module.cors_config(None) is None and module.cors_config(" ") is None


@pytest.mark.parametrize("route", ["apigw_post_images", "apigw_post_jobs"])
def test_logs_carry_the_request_id_never_the_api_key_and_the_prompt_only_at_debug(
    http_api: tuple[Any, Any], lambda_context: LambdaContext, route: str
) -> None:
    module = http_api[0]
    handler = module.logger.registered_handler
    stream = io.StringIO()
    previous = handler.setStream(stream)
    prompt = "a red porsche" if route == "apigw_post_images" else "a lighthouse at dusk"
    try:
        for level in ("INFO", "DEBUG"):  # INFO is the deployed default
            module.logger.setLevel(level)
            stream.seek(0)
            stream.truncate()
            event = api_event(
                route, headers={"Idempotency-Key": new_key()} if route == "apigw_post_jobs" else None
            )
            assert call(module, event, lambda_context)[0] in {200, 202}
            logged = stream.getvalue()
            assert request_id(event) in logged and '"correlation_id"' in logged
            assert API_KEY not in logged and "x-api-key" not in logged.lower()
            assert (prompt in logged) is (level == "DEBUG")
    finally:
        handler.setStream(previous)
        module.logger.setLevel("WARNING")
