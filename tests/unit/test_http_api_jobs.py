"""The HTTP API Lambda's job routes (``POST /images``' wait and handoff, ``GET /jobs``, ``DELETE
/jobs/{id}``, ``POST /jobs/{id}/retry``), called with API Gateway proxy events against moto's Step
Functions interpreter and S3. The jobs state machine is a stand-in whose path the request's prompt
picks: ``slow`` waits 2 s, ``fail-stored`` fails as a request whose every image failed (its manifest
in S3), ``fail-early`` fails before planning, anything else succeeds at once with :data:`MANIFEST`."""

from __future__ import annotations

import copy
import functools
import importlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from image_pipeline.core import clients, job_control
from image_pipeline.core.index_keys import table_definition
from image_pipeline.core.tenancy import Caller, execution_name
from moto import mock_aws

from imagegen.runtime.lambda_router import LambdaContext
from tests.support import load_event

REGION, ACCOUNT = "us-west-2", "123456789012"  # tests/conftest.py's aws_credentials
BUCKET = "http-api-jobs-bucket"
INDEX = "http-api-jobs-index"
JOBS_NAME = "imagegen-jobs-job-routes-test"
JOBS_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{JOBS_NAME}"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/test"
ALICE = Caller("apiKey", "k1a2b3c4d5")  # the apiKeyId of the canonical events
BOB = Caller("apiKey", "bob-key-id")
STORED_MANIFEST_KEY = "ns/images/failed-1/manifest.json"


def manifest(images: list[dict[str, Any]]) -> dict[str, Any]:
    succeeded = sum(i["status"] == "SUCCEEDED" for i in images)
    return {
        "request_id": "ok-1",
        "status": "PARTIAL" if succeeded < len(images) else "SUCCEEDED",
        "bucket": BUCKET,
        "prefix": "ns/images/ok-1/",
        "manifest_key": "ns/images/ok-1/manifest.json",
        "requested": len(images),
        "succeeded": succeeded,
        "filtered": sum(i["status"] == "FILTERED" for i in images),
        "failed": sum(i["status"] == "FAILED" for i in images),
        "cancelled": False,
        "images": images,
    }


#: What the stand-in workflow returns: one image stored, one filtered, one throttled.
MANIFEST = manifest(
    [
        {"index": 0, "seed": 7, "key": "ns/images/ok-1/image-00-7.png", "status": "SUCCEEDED"},
        {"index": 1, "seed": 8, "key": None, "status": "FILTERED", "reason_code": "CONTENT_FILTERED_OUTPUT"},
        {"index": 2, "seed": 9, "key": None, "status": "FAILED", "reason_code": "THROTTLED"},
    ]
)
#: What a request whose every image failed stored before failing (its error says where).
STORED = manifest(
    [
        {"index": 0, "seed": 40, "key": None, "status": "FAILED", "reason_code": "THROTTLED"},
        {"index": 1, "seed": 41, "key": None, "status": "FAILED", "reason_code": "MODEL_TIMEOUT"},
    ]
)


def _definition() -> dict[str, Any]:
    def prompt_is(text: str, target: str) -> dict[str, Any]:
        return {"Variable": "$.request.prompt", "StringEquals": text, "Next": target}

    stored_cause = json.dumps(
        {
            "errorType": "ImagesThrottled",
            "errorMessage": f"No image was generated (THROTTLED x2). Manifest: s3://{BUCKET}/{STORED_MANIFEST_KEY}",
        }
    )
    return {
        "StartAt": "Route",
        "States": {
            "Route": {
                "Type": "Choice",
                "Choices": [
                    prompt_is("slow", "Slow"),
                    prompt_is("fail-stored", "FailStored"),
                    prompt_is("fail-early", "FailEarly"),
                ],
                "Default": "Done",
            },
            "Slow": {"Type": "Wait", "Seconds": 2, "Next": "Done"},
            "Done": {"Type": "Pass", "Result": MANIFEST, "End": True},
            "FailStored": {"Type": "Fail", "Error": "ImagesThrottled", "Cause": stored_cause},
            "FailEarly": {
                "Type": "Fail",
                "Error": "InvalidRequest",
                "Cause": json.dumps(
                    {"errorType": "InvalidRequest", "errorMessage": "Invalid request: count"}
                ),
            },
        },
    }


@pytest.fixture
def api(aws_credentials: None, monkeypatch: pytest.MonkeyPatch, fresh_clients: None) -> Iterator[Any]:
    """``call(event)`` -> (status, body, headers) of the HTTP API handler, over moto."""
    monkeypatch.setenv("IMAGES_BUCKET", BUCKET)
    monkeypatch.setenv("PRESIGN_EXPIRY_SECONDS", "900")
    monkeypatch.setenv("DEFAULT_MODEL", "stable-image-core")
    monkeypatch.setenv("JOBS_STATE_MACHINE_ARN", JOBS_ARN)
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    monkeypatch.delenv("SYNC_MAX_WAIT_SECONDS", raising=False)
    monkeypatch.setenv("INDEX_TABLE", INDEX)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        clients.reset_clients()
        module = importlib.import_module("image_pipeline.handlers.http_api")
        module.environment.cache_clear()
        sfn = boto3.client("stepfunctions", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        if JOBS_ARN not in {m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}:
            sfn.create_state_machine(
                name=JOBS_NAME, definition=json.dumps(_definition()), roleArn=ROLE, type="STANDARD"
            )
        if BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_object(Bucket=BUCKET, Key=STORED_MANIFEST_KEY, Body=json.dumps(STORED).encode())
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        if INDEX not in dynamodb.list_tables()["TableNames"]:
            dynamodb.create_table(TableName=INDEX, **table_definition())

        def call(
            event: dict[str, Any], context: LambdaContext | None = None
        ) -> tuple[int, Any, dict[str, list[str]]]:
            response = module.handler(event, context or LambdaContext(function_name="imagegen-http-api"))
            return response["statusCode"], json.loads(response["body"]), response["multiValueHeaders"]

        call.sfn = sfn  # type: ignore[attr-defined]
        call.s3 = s3  # type: ignore[attr-defined]
        yield call
        module.environment.cache_clear()


def event(
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    caller: Caller = ALICE,
) -> dict[str, Any]:
    """A REST API proxy event for ``method path`` (stage ``v1``) by ``caller`` (an API key's id)."""
    base: dict[str, Any] = copy.deepcopy(load_event("apigw_post_images"))
    base["httpMethod"] = method
    base["path"] = path
    base["resource"] = path
    base["requestContext"].update(
        {"path": f"/v1{path}", "httpMethod": method, "requestId": str(uuid.uuid4()), "resourcePath": path}
    )
    base["requestContext"]["identity"]["apiKeyId"] = caller.id
    base["body"] = json.dumps(body) if body is not None else None
    for name, value in (headers or {}).items():
        base["headers"][name] = value
        base["multiValueHeaders"][name] = [value]
    base["queryStringParameters"] = query or None
    base["multiValueQueryStringParameters"] = {k: [v] for k, v in (query or {}).items()} or None
    parts = path.strip("/").split("/")
    base["pathParameters"] = {"id": parts[1]} if len(parts) > 1 and parts[0] == "jobs" else None
    return base


def post_images(prompt: str, **kwargs: Any) -> dict[str, Any]:
    return event("POST", "/images", body={"prompt": prompt, "count": 3}, **kwargs)


def post_job(prompt: str, caller: Caller = ALICE) -> dict[str, Any]:
    return event("POST", "/jobs", body={"prompt": prompt, "count": 3}, caller=caller)


def wait_until_ended(sfn: Any, caller: Caller, job_id: str) -> None:
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{JOBS_NAME}:{execution_name(caller, job_id)}"
    deadline = time.monotonic() + 10
    while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)


class _Remaining(LambdaContext):
    """A context with ``seconds`` of the invocation left."""

    def __init__(self, seconds: float) -> None:
        super().__init__(function_name="imagegen-http-api")
        self.seconds = seconds

    def get_remaining_time_in_millis(self) -> int:
        return int(self.seconds * 1000)


# -- POST /images: wait, or hand the job over ---------------------------------------------------------


def test_a_sync_request_is_a_job_of_the_caller_and_answers_its_manifest(api: Any) -> None:
    request = post_images("a red porsche")
    status, body, headers = api(request)
    assert status == 200, body
    assert [i["status"] for i in body["images"]] == ["SUCCEEDED", "FILTERED", "FAILED"]
    assert "X-Amz-Signature=" in body["images"][0]["url"] and "download_url" in body["images"][0]
    assert "Preference-Applied" not in headers  # no preference stated: the longest wait, none applied
    request_id = request["requestContext"]["requestId"]
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{JOBS_NAME}:{execution_name(ALICE, request_id)}"
    described = api.sfn.describe_execution(executionArn=arn)  # the Standard workflow: a job, kept
    assert json.loads(described["input"]) == {
        "request": {"prompt": "a red porsche", "count": 3},
        "caller": ALICE.to_input(),
    }
    # The same job is a job like any other: GET /jobs/{request id} answers it.
    status, job, _ = api(event("GET", f"/jobs/{request_id}"))
    assert status == 200 and job["status"] == "succeeded" and job["manifest"]["succeeded"] == 1


def test_a_sync_request_longer_than_its_wait_is_handed_over_as_a_job(api: Any) -> None:
    request = post_images("slow", headers={"Prefer": "wait=1"})
    started = time.monotonic()
    status, job, headers = api(request)
    # waited what it was asked (a lower bound only: the 202 of a running job below shows it did not wait the run)
    assert time.monotonic() - started > 0.9
    request_id = request["requestContext"]["requestId"]
    assert status == 202 and job["job_id"] == request_id and job["status"] in {"queued", "running"}
    assert job["status_url"] == f"/jobs/{request_id}" and set(job["progress"]) == {"total", "done", "failed"}
    # what is stored so far, as GET /jobs/{id} lists it while the job runs (presigned)
    assert isinstance(job["images_so_far"], list)
    assert all("X-Amz-Signature=" in i["url"] for i in job["images_so_far"] if i["key"])
    assert headers["Location"] == [f"/v1/jobs/{request_id}"]
    assert headers["Preference-Applied"] == ["wait=1"]
    # Nothing is lost: the job goes on, and its manifest comes from GET /jobs/{id}.
    wait_until_ended(api.sfn, ALICE, request_id)
    status, done, _ = api(event("GET", f"/jobs/{request_id}"))
    assert status == 200 and done["status"] == "succeeded" and done["manifest"]["requested"] == 3


@pytest.mark.parametrize(
    ("prefer", "remaining", "applied", "status"),
    [
        ("respond-async", 300, "respond-async", 202),  # no wait at all
        ("wait=600", 3.5, "wait=0", 202),  # capped by the invocation's time left (less the margin)
        (None, 3.5, None, 202),  # the default: as long as the time left allows
    ],
)
def test_the_wait_is_capped_by_the_time_the_function_has_left(
    api: Any, prefer: str | None, remaining: float, applied: str | None, status: int
) -> None:
    request = post_images("slow", headers={"Prefer": prefer} if prefer else None)
    answered, _, headers = api(request, _Remaining(remaining))
    assert answered == status
    assert headers.get("Preference-Applied") == ([applied] if applied else None)


def test_the_longest_wait_comes_from_the_settings(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_MAX_WAIT_SECONDS", "1")
    importlib.import_module("image_pipeline.handlers.http_api").environment.cache_clear()
    _, _, headers = api(post_images("slow", headers={"Prefer": "wait=20"}))
    assert headers["Preference-Applied"] == ["wait=1"]


def test_a_failed_sync_request_answers_its_error_and_stays_a_job(api: Any) -> None:
    request = post_images("fail-stored")
    status, body, _ = api(request)
    assert status == 429 and body["error"] == "ImagesThrottled" and STORED_MANIFEST_KEY in body["message"]


def lambda_cause(error: str, message: str) -> str:
    return json.dumps({"errorType": error, "errorMessage": message, "stackTrace": ["  File ..."]})


@pytest.mark.parametrize(
    ("described", "status", "error"),
    [
        (
            {"status": "FAILED", "error": "InvalidRequest", "cause": lambda_cause("InvalidRequest", "c")},
            400,
            None,
        ),
        (
            {
                "status": "FAILED",
                "error": "AllImagesFiltered",
                "cause": lambda_cause("AllImagesFiltered", "f"),
            },
            400,
            None,
        ),
        (
            {"status": "FAILED", "error": "ImagesThrottled", "cause": lambda_cause("ImagesThrottled", "t")},
            429,
            None,
        ),
        (
            {"status": "FAILED", "error": "ImagesFailed", "cause": lambda_cause("ImagesFailed", "x")},
            502,
            None,
        ),
        ({"status": "FAILED", "error": "States.Runtime", "cause": "an error in the definition"}, 502, None),
        ({"status": "TIMED_OUT"}, 504, "ExecutionTimedOut"),
        ({"status": "ABORTED"}, 502, "ExecutionAborted"),
        ({"status": "SUCCEEDED", "output": json.dumps({**MANIFEST, "cancelled": True})}, 409, "JobCancelled"),
    ],
)
def test_an_ended_sync_job_that_did_not_succeed_is_never_200(
    api: Any, monkeypatch: pytest.MonkeyPatch, described: dict[str, Any], status: int, error: str | None
) -> None:
    stubbed = boto3.client("stepfunctions", region_name=REGION)
    now = datetime.now(UTC)
    with Stubber(stubbed) as stub:
        stub.add_response("start_execution", {"executionArn": f"{JOBS_ARN}:x", "startDate": now})
        full = {
            "executionArn": f"{JOBS_ARN}:x",
            "stateMachineArn": JOBS_ARN,
            "name": "x",
            "startDate": now,
            "stopDate": now,
            **described,
        }
        stub.add_response("describe_execution", full)
        monkeypatch.setattr(clients, "stepfunctions", functools.cache(lambda: stubbed))
        monkeypatch.setattr(clients, "stepfunctions_poll", functools.cache(lambda: stubbed))
        answered, body, _ = api(post_images("a cat"))
        stub.assert_no_pending_responses()
    assert answered == status and set(body) == {"error", "message"}
    assert body["error"] == (error or described.get("error"))
    if str(described.get("cause", "")).startswith("{"):
        assert body["message"] == json.loads(described["cause"])["errorMessage"]


def test_a_sync_start_refused_by_step_functions_is_named(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stubbed = boto3.client("stepfunctions", region_name=REGION)
    with Stubber(stubbed) as stub:
        stub.add_client_error("start_execution", "ExecutionLimitExceeded", "busy")
        monkeypatch.setattr(clients, "stepfunctions", functools.cache(lambda: stubbed))
        status, body, _ = api(post_images("a cat"))
    assert (status, body["error"]) == (429, "TooManyRequests")


# -- DELETE /jobs/{id} --------------------------------------------------------------------------------


def test_cancel_marks_a_running_job_once_and_refuses_a_second_cancel(api: Any) -> None:
    job_id = api(post_job("slow"))[1]["job_id"]
    status, body, headers = api(event("DELETE", f"/jobs/{job_id}"))
    assert status == 202 and body == {
        "job_id": job_id,
        "status": "cancelling",
        "status_url": f"/jobs/{job_id}",
    }
    assert headers["Location"] == [f"/v1/jobs/{job_id}"]
    marker = api.s3.get_object(Bucket=BUCKET, Key=f"cancellations/{execution_name(ALICE, job_id)}")
    assert json.loads(marker["Body"].read())["execution_name"] == execution_name(ALICE, job_id)
    assert api(event("GET", f"/jobs/{job_id}"))[1]["status"] == "cancelling"
    status, again, _ = api(event("DELETE", f"/jobs/{job_id}"))
    assert status == 409 and again["error"] == "JobAlreadyCancelled"


def test_cancelling_a_finished_job_is_409_and_changes_nothing(api: Any) -> None:
    job_id = api(post_job("a cat"))[1]["job_id"]
    wait_until_ended(api.sfn, ALICE, job_id)
    status, body, _ = api(event("DELETE", f"/jobs/{job_id}"))
    assert status == 409 and body["error"] == "JobFinished" and "succeeded" in body["message"]
    listed = api.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"cancellations/{execution_name(ALICE, job_id)}")
    assert listed.get("KeyCount", 0) == 0


@pytest.mark.parametrize(("job_id", "status"), [("no-such-job", 404), ("bad$id", 400), ("x" * 90, 400)])
def test_cancelling_an_unknown_or_malformed_job(api: Any, job_id: str, status: int) -> None:
    answered, body, _ = api(event("DELETE", f"/jobs/{job_id}"))
    assert answered == status
    assert body["error"] == ("JobNotFound" if status == 404 else "InvalidRequest")
    if status == 400:
        assert body["details"][0]["field"] == "id"


def test_another_callers_job_cannot_be_cancelled_retried_or_read(api: Any) -> None:
    job_id = api(post_job("slow", caller=BOB))[1]["job_id"]
    for request in (
        event("DELETE", f"/jobs/{job_id}"),
        event("POST", f"/jobs/{job_id}/retry"),
        event("GET", f"/jobs/{job_id}"),
    ):
        status, body, _ = api(request)
        assert (status, body["error"]) == (404, "JobNotFound")
    assert api(event("GET", f"/jobs/{job_id}", caller=BOB))[1]["status"] in {"queued", "running"}


# -- GET /jobs ------------------------------------------------------------------------------------------


def test_the_list_pages_through_the_callers_jobs_newest_first(api: Any) -> None:
    carol, dave = Caller("apiKey", f"carol-{uuid.uuid4().hex[:6]}"), Caller("apiKey", "dave")
    mine = []
    for i in range(5):
        mine.append(api(post_job(f"cat {i}", caller=carol))[1]["job_id"])
        api(post_job(f"dog {i}", caller=dave))
        time.sleep(0.01)  # distinct start times
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        query = {"limit": "2", **({"next_token": token} if token else {})}
        status, page, _ = api(event("GET", "/jobs", query=query, caller=carol))
        assert status == 200 and len(page["jobs"]) <= 2
        seen.extend(job["job_id"] for job in page["jobs"])
        pages += 1
        token = page["next_token"]
        if not token:
            break
        assert pages < 10
    assert seen == list(reversed(mine))  # every one of carol's, newest first, once; none of dave's
    first = api(event("GET", "/jobs", query={"limit": "1"}, caller=carol))[1]["jobs"][0]
    assert set(first) == {
        "job_id", "status", "started_at", "stopped_at", "status_url", "created_at", "prompt",
        "negative_prompt", "model", "count", "succeeded", "filtered", "failed", "cost_usd", "retry_of",
        "error", "thumbnail",
    }  # fmt: skip
    assert first["prompt"] == "cat 4" and first["started_at"] and first["status_url"] == f"/jobs/{mine[-1]}"


def test_a_token_of_another_caller_or_altered_is_400(api: Any) -> None:
    frank, gina = Caller("apiKey", f"frank-{uuid.uuid4().hex[:6]}"), Caller("apiKey", "gina")
    for i in range(2):
        api(post_job(f"cat {i}", caller=frank))
    token = api(event("GET", "/jobs", query={"limit": "1"}, caller=frank))[1]["next_token"]
    assert token
    status, body, _ = api(event("GET", "/jobs", query={"limit": "1", "next_token": token}, caller=gina))
    assert status == 400 and body["details"][0]["field"] == "next_token"
    cursor = job_control.decode_token(token, None)
    cursor["key"]["caller_jobs"] = f"CALLER#{gina.namespace}"  # altered to read another's jobs: refused
    foreign = job_control.encode_token({k: v for k, v in cursor.items() if k != "v"})
    status, body, _ = api(event("GET", "/jobs", query={"next_token": foreign}, caller=frank))
    assert status == 400 and body["details"][0]["field"] == "next_token"
    # altered within the caller's own jobs (an earlier position): only moves where the page starts
    cursor = job_control.decode_token(token, None)
    cursor["key"]["started"] = "9999-12-31T00:00:00.000Z#x"
    moved = job_control.encode_token({k: v for k, v in cursor.items() if k != "v"})
    status, body, _ = api(event("GET", "/jobs", query={"next_token": moved}, caller=frank))
    assert status == 200 and {j["prompt"] for j in body["jobs"]} == {"cat 0", "cat 1"}


def test_the_list_filters_by_status_and_settles_what_the_index_still_calls_running(api: Any) -> None:
    """The stand-in workflow writes nothing to the index (no ValidateRequest, no BuildManifest): every
    ended job is found by the list as RUNNING, checked against its execution, listed with its real
    status and counts, and written back."""
    erin = Caller("apiKey", f"erin-{uuid.uuid4().hex[:6]}")
    done = api(post_job("a cat", caller=erin))[1]["job_id"]
    slow = api(post_job("slow", caller=erin))[1]["job_id"]
    cancelled = api(post_job("slow", caller=erin))[1]["job_id"]
    failed = api(post_job("fail-early", caller=erin))[1]["job_id"]
    api(event("DELETE", f"/jobs/{cancelled}", caller=erin))
    for job_id in (done, failed):
        wait_until_ended(api.sfn, erin, job_id)

    def jobs(status: str) -> list[dict[str, Any]]:
        page = api(event("GET", "/jobs", query={"status": status}, caller=erin))[1]
        assert all(job["status"] == status for job in page["jobs"])
        return page["jobs"]

    assert [j["job_id"] for j in jobs("running")] == [slow]
    assert [j["job_id"] for j in jobs("cancelling")] == [cancelled]
    (succeeded,) = jobs("succeeded")
    assert succeeded["job_id"] == done and (succeeded["succeeded"], succeeded["failed"]) == (1, 1)
    assert succeeded["thumbnail"]["key"] == "ns/images/ok-1/image-00-7.png"
    assert (
        succeeded["thumbnail"]["url"].startswith(f"https://{BUCKET}.s3.")
        and "Signature" in succeeded["thumbnail"]["url"]
    )
    (failure,) = jobs("failed")
    assert failure["job_id"] == failed and failure["error"]["error"] == "InvalidRequest"
    assert failure["thumbnail"] is None and failure["stopped_at"]
    # written back: the index itself now says so, without another look at the execution
    index = clients.image_index()
    assert index is not None
    items = {i["job_id"]: i for i in index.jobs(erin.namespace)[0]}
    assert (items[done]["status"], items[failed]["status"], items[slow]["status"]) == (
        "PARTIAL",
        "FAILED",
        "RUNNING",
    )


def test_one_list_checks_a_bounded_number_of_running_jobs(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_control, "MAX_SETTLE_CHECKS", 1)
    kim = Caller("apiKey", f"kim-{uuid.uuid4().hex[:6]}")
    ended = [api(post_job(f"a cat {n}", caller=kim))[1]["job_id"] for n in range(2)]
    for job_id in ended:
        wait_until_ended(api.sfn, kim, job_id)

    def statuses() -> list[str]:
        return sorted(j["status"] for j in api(event("GET", "/jobs", caller=kim))[1]["jobs"])

    assert statuses() == ["running", "succeeded"]  # one checked (and written back), one as the index says
    assert statuses() == ["succeeded", "succeeded"]  # the next call checks the other


def test_another_callers_jobs_are_never_listed(api: Any) -> None:
    hana, ivan = (
        Caller("apiKey", f"hana-{uuid.uuid4().hex[:6]}"),
        Caller("apiKey", f"ivan-{uuid.uuid4().hex[:6]}"),
    )
    theirs = {api(post_job(f"secret {i}", caller=ivan))[1]["job_id"] for i in range(3)}
    for status in (None, "running", "succeeded", "failed"):
        query = {"limit": "100", **({"status": status} if status else {})}
        listed = api(event("GET", "/jobs", query=query, caller=hana))[1]["jobs"]
        assert listed == []
    assert {
        j["job_id"] for j in api(event("GET", "/jobs", query={"limit": "100"}, caller=ivan))[1]["jobs"]
    } == theirs


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": "queued"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"next_token": "not-a-token"}, "next_token"),
        (
            {
                "next_token": job_control.encode_token(
                    {"key": {"pk": "p", "sk": "s", "caller_jobs": "c", "started": "t"}, "status": "failed"}
                )
            },
            "next_token",
        ),
        ({"next_token": job_control.encode_token({"key": {"pk": "p"}, "status": None})}, "next_token"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_list_parameter_is_400_naming_it(api: Any, query: dict[str, str], field: str) -> None:
    status, body, _ = api(event("GET", "/jobs", query=query))
    assert status == 400 and body["error"] == "InvalidRequest"
    assert field in {d["field"] for d in body["details"]} and field in body["message"]


# -- POST /jobs/{id}/retry ------------------------------------------------------------------------------


def test_retry_makes_a_new_job_of_the_failed_images_with_their_seeds(api: Any) -> None:
    job_id = api(post_job("a cat"))[1]["job_id"]
    wait_until_ended(api.sfn, ALICE, job_id)
    status, body, headers = api(event("POST", f"/jobs/{job_id}/retry"))
    assert status == 202 and body["retry_of"] == job_id and body["images"] == [{"index": 2, "seed": 9}]
    new_id = body["job_id"]
    assert new_id != job_id and headers["Location"] == [f"/v1/jobs/{new_id}"]
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{JOBS_NAME}:{execution_name(ALICE, new_id)}"
    started = json.loads(api.sfn.describe_execution(executionArn=arn)["input"])
    assert started == {
        "request": {"prompt": "a cat", "count": 3},
        "caller": ALICE.to_input(),
        "retry": {"job_id": job_id, "images": [{"index": 2, "seed": 9}]},
    }
    # Filtered images only when asked.
    status, body, _ = api(event("POST", f"/jobs/{job_id}/retry", body={"include_filtered": True}))
    assert status == 202 and body["images"] == [{"index": 1, "seed": 8}, {"index": 2, "seed": 9}]


def test_retry_of_a_failed_job_reads_the_manifest_it_stored(api: Any) -> None:
    job_id = api(post_job("fail-stored"))[1]["job_id"]
    wait_until_ended(api.sfn, ALICE, job_id)
    status, body, _ = api(event("POST", f"/jobs/{job_id}/retry"))
    assert status == 202 and body["images"] == [{"index": 0, "seed": 40}, {"index": 1, "seed": 41}]


@pytest.mark.parametrize(
    ("prompt", "body", "status", "error"),
    [
        ("slow", None, 409, "JobRunning"),
        ("fail-early", None, 409, "NothingToRetry"),
        ("a cat", {"include_filtered": "yes"}, 400, "InvalidRequest"),
        ("a cat", {"everything": True}, 400, "InvalidRequest"),
    ],
)
def test_retry_refusals(api: Any, prompt: str, body: Any, status: int, error: str) -> None:
    job_id = api(post_job(prompt))[1]["job_id"]
    if prompt != "slow":
        wait_until_ended(api.sfn, ALICE, job_id)
    answered, refused, _ = api(event("POST", f"/jobs/{job_id}/retry", body=body))
    assert (answered, refused["error"]) == (status, error), refused


def test_retry_with_nothing_failed_is_409_and_says_what_could_be(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_filtered = manifest([{"index": 0, "seed": 3, "key": None, "status": "FILTERED", "reason_code": "X"}])
    document = api.sfn.describe_state_machine(stateMachineArn=JOBS_ARN)["definition"]
    definition = json.loads(document)
    definition["States"]["Done"]["Result"] = only_filtered
    name = f"imagegen-jobs-filtered-{uuid.uuid4().hex[:6]}"
    arn = api.sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=ROLE)[
        "stateMachineArn"
    ]
    monkeypatch.setenv("JOBS_STATE_MACHINE_ARN", arn)
    importlib.import_module("image_pipeline.handlers.http_api").environment.cache_clear()
    job_id = api(post_job("a cat"))[1]["job_id"]
    execution = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{name}:{execution_name(ALICE, job_id)}"
    deadline = time.monotonic() + 10
    while api.sfn.describe_execution(executionArn=execution)["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status, body, _ = api(event("POST", f"/jobs/{job_id}/retry"))
    assert status == 409 and body["error"] == "NothingToRetry" and "include_filtered" in body["message"]
    assert api(event("POST", f"/jobs/{job_id}/retry", body={"include_filtered": True}))[0] == 202
