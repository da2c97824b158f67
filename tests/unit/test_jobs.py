"""The API contract (``image_pipeline.core.jobs``) and the ``GET /jobs/{id}`` / ``GET /models`` Lambda,
called with API Gateway proxy events against a moto state machine (or a stubbed client)."""

from __future__ import annotations

import functools
import importlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from image_pipeline.core import clients
from image_pipeline.core.jobs import (
    ERROR_STATUS,
    MAX_BODY_BYTES,
    ApiError,
    cause_message,
    check_job_id,
    execution_arn,
    failure_of,
    http_status_for_failure,
    job_from_execution,
    model_catalog,
    parse_body,
    progress_from_history,
    same_input,
    validate_submission,
)
from image_pipeline.core.settings import Settings
from moto import mock_aws

from imagegen.lambda_router import LambdaContext

REGION, ACCOUNT = "us-east-1", "123456789012"
BUCKET = "jobs-api-bucket"
SM_NAME = "imagegen-jobs-test"
SM_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{SM_NAME}"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/test"
STALE_MANIFEST = {
    "request_id": "ok-1",
    "status": "SUCCEEDED",
    "bucket": BUCKET,
    "prefix": "images/ok-1/",
    "requested": 2,
    "succeeded": 1,
    "filtered": 1,
    "failed": 0,
    "images": [
        {"index": 0, "key": "images/ok-1/image-00-7.png", "status": "SUCCEEDED", "url": "https://stale"},
        {"index": 1, "key": None, "status": "FILTERED", "reason_code": "CONTENT_FILTERED_OUTPUT"},
    ],
    "urls_expire_at": "2000-01-01T00:00:00+00:00",
}
FILTERED_CAUSE = json.dumps(
    {"errorMessage": "No image was generated (CONTENT_FILTERED_INPUT x2)", "errorType": "AllImagesFiltered"}
)


# -- submissions -----------------------------------------------------------------------------------


def test_body_over_the_limit_is_413() -> None:
    with pytest.raises(ApiError) as caught:
        parse_body(b" " * (MAX_BODY_BYTES + 1), "application/json")
    assert caught.value.status == 413 and caught.value.body()["details"][0]["field"] == "body"


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_json_is_415(content_type: str | None) -> None:
    with pytest.raises(ApiError) as caught:
        parse_body(b'{"prompt": "x"}', content_type)
    assert caught.value.status == 415 and caught.value.error == "InvalidRequest"
    assert caught.value.body()["details"][0]["field"] == "Content-Type"


@pytest.mark.parametrize("body", [b"{", b"prompt=x", b"\xff\xfe", b""])
def test_unparsable_json_is_400(body: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        parse_body(body, "application/json")
    assert caught.value.status == 400 and "not valid JSON" in caught.value.message


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/merge+json"])
def test_json_media_types_are_accepted(content_type: str) -> None:
    assert parse_body(b'{"prompt": "x"}', content_type) == {"prompt": "x"}


def test_a_valid_submission_gives_the_execution_input(settings: Settings) -> None:
    execution_input, key = validate_submission({"prompt": "  a cat ", "count": "2"}, settings=settings)
    assert execution_input == {"prompt": "a cat", "count": 2} and key is None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (["a list"], "request"),
        ("a string", "request"),
        ({"count": 2}, "prompt"),
        ({"prompt": "x", "count": 41}, "count"),
        ({"prompt": "x", "colour": "red"}, "colour"),
        ({"prompt": "x", "model": "dall-e"}, "model"),
        # per-model checks (plan_request), not only the shared schema:
        ({"prompt": "x", "model": "nova-canvas", "width": 1000, "height": 1000}, "width"),
        ({"prompt": "x" * 600, "model": "titan-image-v2"}, "prompt"),
    ],
)
def test_invalid_submissions_name_the_field(raw: Any, field: str, settings: Settings) -> None:
    with pytest.raises(ApiError) as caught:
        validate_submission(raw, settings=settings)
    body = caught.value.body()
    assert caught.value.status == 400 and body["error"] == "InvalidRequest"
    assert field in {d["field"] for d in body["details"]} and field in body["message"]


def test_models_outside_the_deployment_are_invalid() -> None:
    settings = Settings(images_bucket="b", allowed_models=("nova-canvas",), default_model="nova-canvas")
    with pytest.raises(ApiError, match="not enabled"):
        validate_submission({"prompt": "x", "model": "stable-image-core"}, settings=settings)


def test_idempotency_key_from_header_or_body(settings: Settings) -> None:
    from_header = validate_submission({"prompt": "x"}, settings=settings, idempotency_header="k-2")
    raw = {"prompt": "x", "idempotency_key": "k-2"}
    from_body = validate_submission(raw, settings=settings)
    assert from_header == from_body == ({"prompt": "x", "idempotency_key": "k-2"}, "k-2")
    assert validate_submission(raw, settings=settings, idempotency_header="k-2")[1] == "k-2"
    with pytest.raises(ApiError, match="differs from the Idempotency-Key header"):
        validate_submission(raw, settings=settings, idempotency_header="k-3")
    with pytest.raises(ApiError) as caught:
        validate_submission({"prompt": "x"}, settings=settings, idempotency_header="no spaces please")
    assert caught.value.body()["details"][0]["field"] == "Idempotency-Key"


def test_same_input_compares_json_values() -> None:
    assert same_input('{"b": 1, "a": "x"}', {"a": "x", "b": 1})
    assert not same_input('{"a": "x"}', {"a": "y"})
    assert not same_input("not json", {"a": "x"})


# -- jobs -------------------------------------------------------------------------------------------


def test_execution_arn_is_derived_from_the_state_machine() -> None:
    assert execution_arn(SM_ARN, "job-1") == f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{SM_NAME}:job-1"
    with pytest.raises(ValueError):
        execution_arn("arn:aws:lambda:us-east-1:1:function:f", "job-1")


@pytest.mark.parametrize("job_id", ["", "a b", "../x", "x" * 81, "a:b", "a%2Fb"])
def test_malformed_job_ids_are_not_found(job_id: str) -> None:
    with pytest.raises(ApiError) as caught:
        check_job_id(job_id)
    assert caught.value.status == 404 and caught.value.error == "JobNotFound"


@pytest.mark.parametrize(
    ("status", "error", "http"),
    [
        ("FAILED", "InvalidRequest", 400),
        ("FAILED", "AllImagesFiltered", 400),
        ("FAILED", "ImagesThrottled", 429),
        ("FAILED", "ImagesFailed", 502),
        ("FAILED", "States.Runtime", 502),
        ("FAILED", None, 502),
        ("TIMED_OUT", None, 504),
        ("TIMED_OUT", "States.Timeout", 504),
        ("ABORTED", None, 502),
    ],
)
def test_failures_map_to_http_statuses(status: str, error: str | None, http: int) -> None:
    assert http_status_for_failure(status, error) == http != 200


def test_the_status_table_covers_the_named_workflow_errors() -> None:
    assert set(ERROR_STATUS) == {"InvalidRequest", "AllImagesFiltered", "ImagesThrottled"}


def test_error_message_comes_from_the_lambda_cause() -> None:
    assert cause_message(FILTERED_CAUSE) == "No image was generated (CONTENT_FILTERED_INPUT x2)"
    assert cause_message("plain text") == "plain text" and cause_message(None) == ""
    assert failure_of("TIMED_OUT", None, None) == {
        "error": "ExecutionTimedOut",
        "message": "the workflow did not finish in time",
    }
    assert failure_of("FAILED", "AllImagesFiltered", FILTERED_CAUSE)["error"] == "AllImagesFiltered"


def test_progress_counts_finished_branches() -> None:
    history = [
        {"type": "ExecutionStarted"},
        {"type": "MapStateStarted", "mapStateStartedEventDetails": {"length": 3}},
        {"type": "MapIterationSucceeded"},
        {"type": "MapIterationFailed"},
    ]
    assert progress_from_history(history) == {"total": 3, "done": 1, "failed": 1}
    assert progress_from_history([])["total"] is None


def _described(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "executionArn": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{SM_NAME}:j",
        "stateMachineArn": SM_ARN,
        "name": "j",
        "status": status,
        "startDate": datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
        **extra,
    }


def test_job_documents_by_status(aws_credentials: None) -> None:
    # Presigning is local (no AWS call); SigV4 as the Lambda's client signs.
    s3 = boto3.client("s3", region_name=REGION, config=Config(signature_version="s3v4"))
    queued = job_from_execution(
        _described("RUNNING"), s3=s3, expires_in=60, progress={"total": None, "done": 0, "failed": 0}
    )
    assert queued["status"] == "queued" and queued["started_at"] == "2026-11-23T10:00:00+00:00"
    running = job_from_execution(
        _described("RUNNING"), s3=s3, expires_in=60, progress={"total": 4, "done": 1, "failed": 0}
    )
    assert running["status"] == "running" and running["progress"] == {"total": 4, "done": 1, "failed": 0}
    assert "manifest" not in running and "error" not in running

    stopped = {"stopDate": datetime(2026, 11, 23, 10, 1, tzinfo=UTC)}
    done = job_from_execution(
        _described("SUCCEEDED", output=json.dumps(STALE_MANIFEST), **stopped), s3=s3, expires_in=900
    )
    assert done["status"] == "succeeded" and done["stopped_at"] == "2026-11-23T10:01:00+00:00"
    url = done["manifest"]["images"][0]["url"]
    assert url != "https://stale" and "image-00-7.png" in url and "X-Amz-Expires=900" in url
    assert "url" not in done["manifest"]["images"][1]
    assert done["manifest"]["urls_expire_at"] > "2026"

    failed = job_from_execution(
        _described("FAILED", error="AllImagesFiltered", cause=FILTERED_CAUSE), s3=s3, expires_in=60
    )
    assert failed["status"] == "failed"
    assert (
        failed["error"]["error"] == "AllImagesFiltered" and "CONTENT_FILTERED" in failed["error"]["message"]
    )
    for status in ("TIMED_OUT", "ABORTED"):
        assert job_from_execution(_described(status), s3=s3, expires_in=60)["status"] == "failed"


def test_model_catalog_marks_enabled_and_default() -> None:
    settings = Settings(allowed_models=("nova-canvas", "stable-image-core"), default_model="nova-canvas")
    catalog = model_catalog(settings)
    by_id = {m["id"]: m for m in catalog["models"]}
    assert catalog["default_model"] == "nova-canvas" and len(by_id) >= 6
    assert by_id["nova-canvas"]["enabled"] and by_id["nova-canvas"]["default"]
    assert by_id["stable-image-core"]["enabled"] and not by_id["stable-image-core"]["default"]
    assert not by_id["titan-image-v1"]["enabled"]
    assert by_id["nova-canvas"]["model_id"] == "amazon.nova-canvas-v1:0"
    assert all(m["enabled"] for m in model_catalog(Settings())["models"])


# -- the Lambda handler ---------------------------------------------------------------------------


def apigw_event(path: str, resource: str, path_parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway REST (proxy integration) event for a GET."""
    return {
        "resource": resource,
        "path": path,
        "httpMethod": "GET",
        "headers": {"Accept": "application/json", "x-api-key": "k"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": "GET",
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "accountId": ACCOUNT,
            "identity": {"sourceIp": "192.0.2.1"},
        },
        "body": None,
        "isBase64Encoded": False,
    }


def get_job_event(job_id: str) -> dict[str, Any]:
    return apigw_event(f"/jobs/{job_id}", "/jobs/{job_id}", {"job_id": job_id})


def _state_machine(sfn: Any) -> str:
    """Succeeds with a (stale) manifest, or fails like the workflow does, depending on the input."""
    definition = {
        "StartAt": "Route",
        "States": {
            "Route": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.outcome", "StringEquals": "fail", "Next": "Failed"}],
                "Default": "Done",
            },
            "Done": {"Type": "Pass", "Result": STALE_MANIFEST, "End": True},
            "Failed": {"Type": "Fail", "Error": "AllImagesFiltered", "Cause": FILTERED_CAUSE},
        },
    }
    return sfn.create_state_machine(
        name=SM_NAME, definition=json.dumps(definition), roleArn=ROLE, type="STANDARD"
    )["stateMachineArn"]


def _finish(sfn: Any, arn: str) -> None:
    deadline = time.monotonic() + 10
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the test execution did not finish"
        time.sleep(0.02)


@pytest.fixture
def jobs_api(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch, fresh_clients: None
) -> Iterator[tuple[Any, Any]]:
    """The handler module and a moto Step Functions client with the test state machine."""
    monkeypatch.setenv("IMAGES_BUCKET", BUCKET)
    monkeypatch.setenv("PRESIGN_EXPIRY_SECONDS", "900")
    monkeypatch.setenv("ALLOWED_MODELS", "nova-canvas,stable-image-core")
    monkeypatch.setenv("DEFAULT_MODEL", "stable-image-core")
    monkeypatch.setenv("JOBS_STATE_MACHINE_ARN", SM_ARN)
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        clients.reset_clients()
        module = importlib.import_module("image_pipeline.handlers.jobs_api")
        module.environment.cache_clear()
        sfn = boto3.client("stepfunctions", region_name=REGION)
        if SM_ARN not in {m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}:
            _state_machine(sfn)
        yield module, sfn
        module.environment.cache_clear()


def _call(module: Any, event: dict[str, Any], context: LambdaContext) -> tuple[int, dict[str, Any]]:
    response = module.handler(event, context)
    assert response["multiValueHeaders"]["Content-Type"] == ["application/json"]
    return response["statusCode"], json.loads(response["body"])


def test_lambda_succeeded_job_has_fresh_urls(jobs_api: Any, lambda_context: LambdaContext) -> None:
    module, sfn = jobs_api
    arn = sfn.start_execution(stateMachineArn=SM_ARN, name="ok-1", input="{}")["executionArn"]
    _finish(sfn, arn)
    status, job = _call(module, get_job_event("ok-1"), lambda_context)
    assert status == 200 and job["job_id"] == "ok-1" and job["status"] == "succeeded"
    assert job["started_at"] and job["stopped_at"] and "progress" not in job
    url = job["manifest"]["images"][0]["url"]
    assert url.startswith(f"https://{BUCKET}.s3.amazonaws.com/images/ok-1/image-00-7.png?")
    assert "X-Amz-Expires=900" in url and "X-Amz-Signature=" in url


def test_lambda_failed_job_has_the_error(jobs_api: Any, lambda_context: LambdaContext) -> None:
    module, sfn = jobs_api
    arn = sfn.start_execution(stateMachineArn=SM_ARN, name="bad-1", input='{"outcome": "fail"}')
    _finish(sfn, arn["executionArn"])
    status, job = _call(module, get_job_event("bad-1"), lambda_context)
    assert status == 200 and job["status"] == "failed" and "manifest" not in job
    assert job["error"] == {
        "error": "AllImagesFiltered",
        "message": "No image was generated (CONTENT_FILTERED_INPUT x2)",
    }


@pytest.mark.parametrize("job_id", ["never-started", "bad$id", "x" * 90])
def test_lambda_unknown_or_malformed_job_is_404(
    jobs_api: Any, lambda_context: LambdaContext, job_id: str
) -> None:
    status, body = _call(jobs_api[0], get_job_event(job_id), lambda_context)
    assert status == 404 and body["error"] == "JobNotFound"


def test_lambda_running_job_reports_progress(
    jobs_api: Any, lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = jobs_api[0]
    stubbed = boto3.client("stepfunctions", region_name=REGION)
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{SM_NAME}:run-1"
    history = [
        {"timestamp": datetime.now(UTC), "type": t, "id": i + 1}
        for i, t in enumerate(["ExecutionStarted", "MapIterationSucceeded", "MapIterationSucceeded"])
    ]
    history.insert(
        1,
        {
            "timestamp": datetime.now(UTC),
            "type": "MapStateStarted",
            "id": 9,
            "mapStateStartedEventDetails": {"length": 4},
        },
    )
    with Stubber(stubbed) as stub:
        described = {**_described("RUNNING"), "executionArn": arn, "name": "run-1"}
        stub.add_response("describe_execution", described, {"executionArn": arn})
        stub.add_response(
            "get_execution_history", {"events": history}, {"executionArn": arn, "maxResults": 1000}
        )
        monkeypatch.setattr(clients, "stepfunctions", functools.cache(lambda: stubbed))
        status, job = _call(module, get_job_event("run-1"), lambda_context)
        stub.assert_no_pending_responses()
    assert status == 200 and job["status"] == "running"
    assert job["progress"] == {"total": 4, "done": 2, "failed": 0}


def test_lambda_models_lists_the_deployment(jobs_api: Any, lambda_context: LambdaContext) -> None:
    status, body = _call(jobs_api[0], apigw_event("/models", "/models"), lambda_context)
    assert status == 200 and body["default_model"] == "stable-image-core"
    enabled = sorted(m["id"] for m in body["models"] if m["enabled"])
    assert enabled == ["nova-canvas", "stable-image-core"]


def test_lambda_unknown_route_is_404(jobs_api: Any, lambda_context: LambdaContext) -> None:
    response = jobs_api[0].handler(apigw_event("/nothing", "/nothing"), lambda_context)
    assert response["statusCode"] == 404


def test_lambda_refuses_a_bad_configuration(
    jobs_api: Any, lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBS_STATE_MACHINE_ARN", "not-an-arn")
    jobs_api[0].environment.cache_clear()
    with pytest.raises(RuntimeError, match="Invalid handler configuration"):
        jobs_api[0].handler(get_job_event("ok-1"), lambda_context)
