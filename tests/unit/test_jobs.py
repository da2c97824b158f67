"""The API contract (``image_pipeline.core.jobs``): plain functions shared by the HTTP API Lambda
(``tests/unit/test_http_api.py``) and the local server (``tests/e2e/test_local_api.py``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import ANY, Stubber
from image_pipeline.contract.errors import cause_message
from image_pipeline.core.execution_input import ExecutionInput
from image_pipeline.core.jobs import (
    MAX_BODY_BYTES,
    WORKFLOW_ERROR_HTTP_STATUS,
    ApiError,
    StartedJob,
    check_job_id,
    describe_job,
    execution_arn,
    execution_document,
    execution_progress,
    failure_of,
    http_status_for_failure,
    job_from_execution,
    model_catalog,
    parse_body,
    progress_from_history,
    query_request,
    same_input,
    start_job,
    sync_response,
    validate_submission,
)
from image_pipeline.core.settings import Settings
from image_pipeline.core.tenancy import Caller, execution_name

from tests.unit.job_data import FILTERED_CAUSE, stale_manifest

REGION, ACCOUNT = "us-east-1", "123456789012"
BUCKET = "jobs-bucket"
SM_NAME = "imagegen-jobs-test"
SM_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{SM_NAME}"
STALE_MANIFEST = stale_manifest(BUCKET)
ALICE, BOB = Caller("apiKey", "alice-key-id"), Caller("apiKey", "bob-key-id")


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


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"prompt": "a", "count": 1, "count": 2}', "count"),
        (b'{"prompt": "a", "prompt": "a"}', "prompt"),  # even with the same value: send it once
        (b'{"prompt": "a", "extra": {"k": 1, "k": 2}}', "k"),
    ],
)
def test_a_field_given_twice_is_400_naming_it(body: bytes, field: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_body(body, "application/json")
    assert caught.value.status == 400 and caught.value.body()["details"] == [
        {"field": field, "message": "given twice; send each field once"}
    ]


def test_query_request_takes_each_name_once() -> None:
    assert query_request([("prompt", "a"), ("count", "2")]) == {"prompt": "a", "count": 2}
    with pytest.raises(ApiError) as caught:
        query_request([("prompt", "a"), ("count", "1"), ("prompt", "b"), ("count", "2"), ("prompt", "c")])
    assert caught.value.status == 400
    assert [d["field"] for d in caught.value.body()["details"]] == ["prompt", "count"]


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/merge+json"])
def test_json_media_types_are_accepted(content_type: str) -> None:
    assert parse_body(b'{"prompt": "x"}', content_type) == {"prompt": "x"}


def test_a_valid_submission_gives_the_execution_input(settings: Settings) -> None:
    execution_input, key = validate_submission({"prompt": "  a cat ", "count": 2}, settings=settings)
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
        # per-model checks (check_request), not only the shared schema:
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


# -- starting executions -------------------------------------------------------------------------------


def stubbed_sfn() -> tuple[Any, Stubber]:
    client = boto3.client(
        "stepfunctions", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    return client, Stubber(client)


def test_execution_input_is_written_one_way() -> None:
    assert execution_document({"prompt": "é", "count": 2}) == '{"count":2,"prompt":"\\u00e9"}'
    assert execution_document({"b": 1, "a": 2}) == execution_document({"a": 2, "b": 1})


def test_start_job_names_the_execution_by_the_callers_namespace_and_the_key_or_a_uuid() -> None:
    sfn, stub = stubbed_sfn()
    request = {"prompt": "x", "idempotency_key": "order-1"}
    name = f"{ALICE.namespace}-order-1"
    envelope = {"request": request, "caller": {"kind": "apiKey", "id": "alice-key-id"}}
    with stub:
        stub.add_response(
            "start_execution",
            {"executionArn": execution_arn(SM_ARN, name), "startDate": datetime.now(UTC)},
            {"stateMachineArn": SM_ARN, "name": name, "input": execution_document(envelope)},
        )
        submission = ExecutionInput(request, ALICE)
        assert start_job(sfn, SM_ARN, submission, "order-1") == StartedJob("order-1", True, "running")
        stub.add_response("start_execution", {"executionArn": "arn", "startDate": datetime.now(UTC)})
        job_id, created, _ = start_job(sfn, SM_ARN, ExecutionInput({"prompt": "x"}, ALICE), None)
        stub.assert_no_pending_responses()
    assert created and len(job_id) == 36 and job_id.count("-") == 4


def test_two_callers_with_one_key_start_two_executions() -> None:
    sfn, stub = stubbed_sfn()
    with stub:
        for caller in (ALICE, BOB):
            name = execution_name(caller, "order-1")
            stub.add_response(
                "start_execution",
                {"executionArn": execution_arn(SM_ARN, name), "startDate": datetime.now(UTC)},
                {"stateMachineArn": SM_ARN, "name": name, "input": ANY},
            )
            started = start_job(sfn, SM_ARN, ExecutionInput({"prompt": "x"}, caller), "order-1")
            assert started == StartedJob("order-1", True, "running")
        stub.assert_no_pending_responses()
    assert execution_name(ALICE, "order-1") != execution_name(BOB, "order-1")


@pytest.mark.parametrize(
    ("stored", "status", "outcome"),
    [
        ({"prompt": "x"}, "SUCCEEDED", StartedJob("k-1", False, "succeeded")),
        ({"prompt": "x"}, "FAILED", StartedJob("k-1", False, "failed")),
        ({"prompt": "y"}, "SUCCEEDED", 409),
        ({"prompt": "y"}, "RUNNING", 409),
    ],
)
def test_start_job_answers_a_taken_name_by_the_stored_input(
    stored: dict[str, Any], status: str, outcome: Any
) -> None:
    sfn, stub = stubbed_sfn()
    name = execution_name(ALICE, "k-1")
    arn = execution_arn(SM_ARN, name)
    with stub:
        stub.add_client_error(
            "start_execution", "ExecutionAlreadyExists", f"Execution Already Exists: '{arn}'"
        )
        described = {
            "executionArn": arn,
            "stateMachineArn": SM_ARN,
            "name": name,
            "status": status,
            "startDate": datetime.now(UTC),
            "input": execution_document(ExecutionInput(stored, ALICE).to_document()),
        }
        stub.add_response("describe_execution", described, {"executionArn": arn})
        submission = ExecutionInput({"prompt": "x"}, ALICE)
        if outcome == 409:
            with pytest.raises(ApiError) as caught:
                start_job(sfn, SM_ARN, submission, "k-1")
            assert caught.value.status == 409 and caught.value.error == "IdempotencyKeyReused"
            assert "k-1" in caught.value.message and ALICE.namespace not in caught.value.message
        else:
            assert start_job(sfn, SM_ARN, submission, "k-1") == outcome
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "http_status", "status", "error"),
    [
        ("ExecutionLimitExceeded", 400, 429, "TooManyRequests"),
        ("ThrottlingException", 400, 429, "TooManyRequests"),
        ("InvalidExecutionInput", 400, 400, "InvalidRequest"),
        ("AccessDeniedException", 400, 502, "ExecutionNotStarted"),
        ("StateMachineDoesNotExist", 400, 502, "ExecutionNotStarted"),
        ("InternalFailure", 500, 503, "ServiceUnavailable"),
    ],
)
def test_start_job_refusals_are_named_errors(code: str, http_status: int, status: int, error: str) -> None:
    sfn, stub = stubbed_sfn()
    with stub:
        stub.add_client_error("start_execution", code, "refused", http_status_code=http_status)
        with pytest.raises(ApiError) as caught:
            start_job(sfn, SM_ARN, ExecutionInput({"prompt": "x"}, ALICE), "k-2")
    assert (caught.value.status, caught.value.error) == (status, error)


def lambda_cause(error: str, message: str) -> str:
    return json.dumps({"errorType": error, "errorMessage": message, "stackTrace": ["  File ..."]})


@pytest.mark.parametrize(
    ("result", "status", "body"),
    [
        ({"status": "SUCCEEDED", "output": '{"status": "SUCCEEDED", "images": []}'}, 200, None),
        ({"status": "SUCCEEDED", "output": {"status": "PARTIAL", "images": []}}, 200, None),
        (
            {
                "status": "FAILED",
                "error": "InvalidRequest",
                "cause": lambda_cause("InvalidRequest", "count: at most 8"),
            },
            400,
            {"error": "InvalidRequest", "message": "count: at most 8"},
        ),
        (
            {"status": "FAILED", "error": "AllImagesFiltered", "cause": FILTERED_CAUSE},
            400,
            {"error": "AllImagesFiltered", "message": "No image was generated (CONTENT_FILTERED_INPUT x2)"},
        ),
        (
            {
                "status": "FAILED",
                "error": "ImagesThrottled",
                "cause": lambda_cause("ImagesThrottled", "slow down"),
            },
            429,
            {"error": "ImagesThrottled", "message": "slow down"},
        ),
        (
            {"status": "FAILED", "error": "ImagesFailed", "cause": lambda_cause("ImagesFailed", "no image")},
            502,
            {"error": "ImagesFailed", "message": "no image"},
        ),
        (
            {"status": "FAILED", "error": "States.Runtime", "cause": "not JSON"},
            502,
            {"error": "States.Runtime", "message": "not JSON"},
        ),
        ({"status": "FAILED"}, 502, {"error": "ExecutionFailed", "message": "the workflow failed"}),
        (
            {"status": "SUCCEEDED"},
            502,
            {"error": "ExecutionFailed", "message": "the workflow returned no output"},
        ),
        (
            {"status": "TIMED_OUT"},
            504,
            {"error": "ExecutionTimedOut", "message": "the workflow did not finish in time"},
        ),
    ],
)
def test_sync_response_maps_every_outcome(result: dict[str, Any], status: int, body: Any) -> None:
    answered = sync_response({"executionArn": "arn", **result})
    expected_body = body
    if body is None:
        output = result["output"]
        expected_body = json.loads(output) if isinstance(output, str) else output
    assert answered == (status, expected_body)


# -- jobs -------------------------------------------------------------------------------------------


def test_execution_arn_is_derived_from_the_state_machine() -> None:
    assert execution_arn(SM_ARN, "job-1") == f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{SM_NAME}:job-1"
    with pytest.raises(ValueError):
        execution_arn("arn:aws:lambda:us-east-1:1:function:f", "job-1")


@pytest.mark.parametrize("job_id", ["", "a b", "../x", "x" * 68, "a:b", "a%2Fb"])
def test_malformed_job_ids_are_400_naming_the_id(job_id: str) -> None:
    with pytest.raises(ApiError) as caught:
        check_job_id(job_id)
    assert caught.value.status == 400 and caught.value.error == "InvalidRequest"
    assert caught.value.details[0].field == "id"


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
    assert set(WORKFLOW_ERROR_HTTP_STATUS) == {
        "InvalidRequest",
        "AllImagesFiltered",
        "ImagesThrottled",
        "SpendLimitExceeded",
    }


def test_error_message_comes_from_the_lambda_cause() -> None:
    assert cause_message(FILTERED_CAUSE) == "No image was generated (CONTENT_FILTERED_INPUT x2)"
    assert cause_message("plain text") == "plain text" and cause_message(None) == ""
    assert cause_message('{"message": "from a service"}') == "from a service" and cause_message(7) == ""
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


def test_execution_progress_reads_history_pages_up_to_the_limit() -> None:
    sfn, stub = stubbed_sfn()
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{SM_NAME}:j"
    pages = [
        [{"type": "MapStateStarted", "mapStateStartedEventDetails": {"length": 5}}],
        [{"type": "MapIterationSucceeded"}, {"type": "MapIterationFailed"}],
        [{"type": "MapIterationSucceeded"}],
    ]
    when = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    for number, events in enumerate(pages):
        answer: dict[str, Any] = {
            "events": [{**e, "timestamp": when, "id": i + 1} for i, e in enumerate(events)],
            "nextToken": f"t{number + 1}",
        }
        expected: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
        if number:
            expected["nextToken"] = f"t{number}"
        stub.add_response("get_execution_history", answer, expected)
    with stub:
        assert execution_progress(sfn, arn, max_pages=2) == {"total": 5, "done": 1, "failed": 1}


def test_job_ids_leave_room_for_the_namespace_in_an_execution_name() -> None:
    longest = "x" * 67
    assert check_job_id(longest) == longest and len(execution_name(ALICE, longest)) == 80


def test_describe_job_of_an_unknown_execution_is_404() -> None:
    sfn, stub = stubbed_sfn()
    stub.add_client_error("describe_execution", "ExecutionDoesNotExist", http_status_code=400)
    with stub, pytest.raises(ApiError) as caught:
        describe_job(sfn, SM_ARN, "nope", caller=ALICE, s3=None, expires_in=60)
    assert (caught.value.status, caught.value.error) == (404, "JobNotFound")


@pytest.mark.parametrize(
    "stored",
    [
        ExecutionInput({"prompt": "x"}, BOB).to_document(),  # another caller under this name
        {"prompt": "x"},  # a bare request: the console's
        None,
    ],
)
def test_describe_job_of_an_execution_started_for_another_caller_is_404(stored: Any) -> None:
    """An execution under ``<alice's namespace>-<id>`` whose input names someone else (an operator's
    console run, or two identities sharing a 48-bit namespace) is not alice's: the same 404."""
    sfn, stub = stubbed_sfn()
    name = execution_name(ALICE, "j-1")
    described = {**_described("SUCCEEDED", output="{}"), "name": name}
    if stored is not None:
        described["input"] = execution_document(stored)
    stub.add_response("describe_execution", described, {"executionArn": execution_arn(SM_ARN, name)})
    with stub, pytest.raises(ApiError) as caught:
        describe_job(sfn, SM_ARN, "j-1", caller=ALICE, s3=None, expires_in=60)
    missing = ApiError(404, "JobNotFound", "no job with id 'j-1'")
    assert (caught.value.status, caught.value.body()) == (404, missing.body())


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
    assert "attachment" in done["manifest"]["images"][0]["download_url"]
    assert "url" not in done["manifest"]["images"][1] and "download_url" not in done["manifest"]["images"][1]
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
