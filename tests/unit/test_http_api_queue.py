"""The synchronous routes of the HTTP API Lambda behind a long queue (issue 15): ``POST /images`` hands
its job over at once (202, ``queue``, ``Retry-After``) instead of waiting for a 202 it cannot avoid;
``POST /v1/images/generations`` answers 429 with ``Retry-After`` and starts nothing. A short queue, no
queue, admission off or a queue that cannot be read: the routes wait as before. The queue is the
counter the Admission function keeps beside its tickets, in moto's DynamoDB."""

# ruff: noqa: F811 - the tests take the imported fixtures as parameters
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from image_pipeline.core import clients, job_control
from image_pipeline.core.admission import QUEUE_KEY, WAITING_COUNTER_PLACE

from imagegen.runtime.engine import create_waiters_table
from imagegen.runtime.lambda_router import LambdaContext
from tests.unit.test_http_api import api_event, call, executions, http_api  # noqa: F401 - fixture
from tests.unit.test_http_api_jobs import ALICE, api, event, post_images, wait_until_ended  # noqa: F401

REGION = "us-west-2"
SLOTS = "http-api-queue-slots"
WAITERS = "http-api-queue-waiters"
MODEL = "stable-image-core"  # the events' default model
#: Two calls in flight: 10 images ahead and 3 more is ceil(13 / 2) = 7 rounds of 6 s, 42 s.
LIMIT = 2
OPENAI_EVENT = "apigw_openai_images_generations"


def seed(waiting: int) -> None:
    """The queue's counter as ``DynamoSlotStore`` keeps it: ``waiting`` tickets of the model."""
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=WAITERS,
        Item={QUEUE_KEY: {"S": MODEL}, "place": {"S": WAITING_COUNTER_PLACE}, "count": {"N": str(waiting)}},
    )


def _admission_on(monkeypatch: pytest.MonkeyPatch, *, waiters: str = WAITERS) -> None:
    """The environment ``stacks/admission.py`` gives the HTTP API function, and its waiters table."""
    monkeypatch.setenv("ADMISSION_TABLE", SLOTS)
    monkeypatch.setenv("ADMISSION_WAITERS_TABLE", waiters)
    monkeypatch.setenv("MODEL_CONCURRENCY", f'{{"{MODEL}": {LIMIT}}}')
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    if WAITERS not in dynamodb.list_tables()["TableNames"]:
        create_waiters_table(dynamodb, WAITERS)
    seed(0)
    clients.reset_clients()  # the settings, read again


@pytest.fixture
def queued_api(api: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The job routes' handler (``test_http_api_jobs.api``) with admission control on."""
    _admission_on(monkeypatch)
    yield api
    seed(0)


@pytest.fixture
def queued_openai(http_api: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    """The OpenAI route's handler (``test_http_api.http_api``) with admission control on."""
    _admission_on(monkeypatch)
    yield http_api
    seed(0)


def no_wait(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record every wait the route starts (none is expected when it hands over at once)."""
    waits: list[float] = []
    real = job_control.wait_for_execution

    def recording(sfn: Any, arn: str, seconds: float, **kwargs: Any) -> Any:
        waits.append(seconds)
        return real(sfn, arn, seconds, **kwargs)

    monkeypatch.setattr(job_control, "wait_for_execution", recording)
    return waits


# -- POST /images ----------------------------------------------------------------------------------


def test_behind_a_long_queue_the_job_is_handed_over_at_once(
    queued_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(10)
    waits = no_wait(monkeypatch)
    request = post_images("slow", headers={"Prefer": "wait=20"})
    status, job, headers = queued_api(request)
    request_id = request["requestContext"]["requestId"]
    assert status == 202, job
    assert waits == []  # no wait at all: it could only have ended in this 202
    # The job document of a 202 after a wait, plus the queue it is behind and when to look.
    assert job["job_id"] == request_id and job["status"] in {"queued", "running"}
    assert job["status_url"] == f"/jobs/{request_id}" and isinstance(job["images_so_far"], list)
    assert job["queue"] == {"ahead": 10, "estimated_seconds": 42}
    assert headers["Retry-After"] == ["42"]
    assert headers["Location"] == [f"/v1/jobs/{request_id}"]
    assert "Preference-Applied" not in headers  # wait=20 was not used
    # The job was started and goes on: GET /jobs/{id} has its manifest.
    wait_until_ended(queued_api.sfn, ALICE, request_id)
    status, done, _ = queued_api(event("GET", f"/jobs/{request_id}"))
    assert status == 200 and done["status"] == "succeeded"


def test_get_images_is_handed_over_the_same_way(queued_api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(10)
    waits = no_wait(monkeypatch)
    status, job, headers = queued_api(event("GET", "/images", query={"prompt": "slow", "count": "3"}))
    assert status == 202 and waits == [] and job["queue"] == {"ahead": 10, "estimated_seconds": 42}
    assert headers["Retry-After"] == ["42"]


@pytest.mark.parametrize(
    ("waiting", "prefer"),
    [
        (1, "wait=20"),  # ceil(4 / 2) = 2 rounds, 12 s: within the wait
        (3, "wait=18"),  # ceil(6 / 2) = 3 rounds, 18 s: ends as the wait does
        (0, "wait=20"),  # no queue
    ],
)
def test_a_short_queue_waits_as_before(
    queued_api: Any, monkeypatch: pytest.MonkeyPatch, waiting: int, prefer: str
) -> None:
    seed(waiting)
    waits = no_wait(monkeypatch)
    status, body, headers = queued_api(post_images("at once", headers={"Prefer": prefer}))
    assert status == 200, body
    assert len(waits) == 1 and waits[0] > 0
    assert "queue" not in body and "Retry-After" not in headers


def test_a_wait_shorter_than_a_short_queue_is_handed_over_too(
    queued_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # wait=1 with 12 s estimated: handed over at once too (the queue outlasts what the client waits).
    seed(1)
    waits = no_wait(monkeypatch)
    status, job, headers = queued_api(post_images("slow", headers={"Prefer": "wait=1"}))
    assert status == 202 and waits == [] and job["queue"] == {"ahead": 1, "estimated_seconds": 12}
    assert headers["Retry-After"] == ["12"]


def test_admission_off_waits_as_before(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADMISSION_TABLE", raising=False)
    monkeypatch.delenv("ADMISSION_WAITERS_TABLE", raising=False)
    waits = no_wait(monkeypatch)
    status, body, headers = api(post_images("at once", headers={"Prefer": "wait=20"}))
    assert status == 200 and waits == [20.0] and "queue" not in body and "Retry-After" not in headers


def test_a_queue_that_cannot_be_read_waits_as_before(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _admission_on(monkeypatch, waiters="no-such-waiters-table")
    waits = no_wait(monkeypatch)
    status, body, headers = api(post_images("at once", headers={"Prefer": "wait=20"}))
    assert status == 200, body
    assert waits == [20.0] and "queue" not in body and "Retry-After" not in headers


# -- POST /v1/images/generations ---------------------------------------------------------------------


def test_openai_behind_a_long_queue_is_429_and_starts_nothing(
    queued_openai: tuple[Any, Any], lambda_context: LambdaContext
) -> None:
    module, sfn = queued_openai
    seed(10)
    before = executions(sfn)
    body = {"prompt": "a red porsche", "n": 3, "size": "1024x1024"}
    status, answer, headers = call(module, api_event(OPENAI_EVENT, body=body), lambda_context)
    assert status == 429, answer
    error = answer["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert error["param"] is None
    assert "queue of stable-image-core is 10 images long, about 42 s" in error["message"]
    assert "POST /jobs" in error["message"]
    assert headers["Retry-After"] == ["42"]
    assert "x-should-retry" not in headers  # the SDK's own rule for a 429 (retry, after Retry-After)
    assert executions(sfn) == before  # nothing started, nothing reserved


def test_openai_behind_a_short_queue_generates_as_before(
    queued_openai: tuple[Any, Any], lambda_context: LambdaContext
) -> None:
    module, sfn = queued_openai
    seed(1)
    before = executions(sfn)
    status, answer, headers = call(module, api_event(OPENAI_EVENT), lambda_context)
    assert status == 200, answer
    assert len(answer["data"]) == 1 and "Retry-After" not in headers
    assert executions(sfn) == before + 1
