"""``imagegen serve`` behind a long admission queue (issue 15), as a client meets it: the official
``openai`` SDK gets a 429 (``openai.RateLimitError``) with ``Retry-After`` and no job is started;
``POST /images`` hands its job over at once (202, ``queue``, ``Retry-After``). The queue is seeded as
the Admission function counts it: the counter item beside the tickets in the engine's waiters table."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import openai
import pytest
from image_pipeline.core.admission import QUEUE_KEY, WAITING_COUNTER_PLACE, quota_of
from image_pipeline.core.time_budget import API_GATEWAY_INTEGRATION_SECONDS, longest_sync_wait

from imagegen.runtime.engine import ADMISSION_WAITERS_TABLE, REGION
from tests.support import LocalServer, count_executions

MODEL = "stable-image-core"  # the engine's default model


class Queue:
    """Adds to (and, at the end, takes back from) the model's waiting counter."""

    def __init__(self) -> None:
        self.client = boto3.client("dynamodb", region_name=REGION)
        self.added = 0

    def add(self, images: int) -> None:
        self.client.update_item(
            TableName=ADMISSION_WAITERS_TABLE,
            Key={QUEUE_KEY: {"S": MODEL}, "place": {"S": WAITING_COUNTER_PLACE}},
            UpdateExpression="ADD #count :n",
            ExpressionAttributeNames={"#count": "count"},
            ExpressionAttributeValues={":n": {"N": str(images)}},
        )
        self.added += images


@pytest.fixture
def queue(engine: Any) -> Iterator[Queue]:
    seeded = Queue()
    yield seeded
    seeded.add(-seeded.added)


def test_the_openai_sdk_gets_a_429_with_retry_after_and_nothing_starts(
    local_server: LocalServer, queue: Queue
) -> None:
    limit = quota_of(MODEL, local_server.engine.config.model_concurrency)
    wait = longest_sync_wait(API_GATEWAY_INTEGRATION_SECONDS)  # what the local server waits at most
    queue.add(10 * limit)  # 10 rounds ahead, 11 with the request's image: 66 s, more than the wait
    expected = 11 * 6
    assert expected > wait
    before = count_executions(local_server.engine)
    sdk = openai.OpenAI(base_url=f"{local_server.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.RateLimitError) as raised:
        sdk.images.generate(prompt="a lighthouse behind a queue", n=1)
    assert raised.value.status_code == 429
    assert raised.value.code == "rate_limit_exceeded"
    assert raised.value.response.headers["retry-after"] == str(expected)
    assert f"is {10 * limit} images long, about {expected} s" in raised.value.message
    assert count_executions(local_server.engine) == before  # no job started, nothing to pay for


def test_a_queue_past_two_minutes_is_not_retried_by_the_sdk(local_server: LocalServer, queue: Queue) -> None:
    # The SDK (openai 3.x, _base_client._should_retry) retries a 429 after its Retry-After when that is
    # at most two minutes, and not at all when it is longer: one request, the error at once.
    limit = quota_of(MODEL, local_server.engine.config.model_concurrency)
    queue.add(30 * limit)  # 31 rounds: 186 s
    sent: list[str] = []
    counting = httpx.Client(event_hooks={"request": [lambda request: sent.append(str(request.url))]})
    sdk = openai.OpenAI(base_url=f"{local_server.url}/v1", api_key="unused", http_client=counting)
    assert sdk.max_retries == 2  # the SDK's default
    with pytest.raises(openai.RateLimitError) as raised:
        sdk.images.generate(prompt="a lighthouse behind a long queue", n=1)
    assert raised.value.response.headers["retry-after"] == "186"
    assert len(sent) == 1


def test_post_images_hands_its_job_over_at_once(local_server: LocalServer, queue: Queue) -> None:
    limit = quota_of(MODEL, local_server.engine.config.model_concurrency)
    queue.add(10 * limit)
    before = count_executions(local_server.engine)
    with httpx.Client(base_url=local_server.url, timeout=120) as api:
        answer = api.post("/images", json={"prompt": "a lighthouse behind a queue", "count": 1})
        assert answer.status_code == 202, answer.text
        job = answer.json()
        assert job["queue"] == {"ahead": 10 * limit, "estimated_seconds": 66}
        assert answer.headers["retry-after"] == "66"
        assert answer.headers["location"] == f"/jobs/{job['job_id']}"
        assert count_executions(local_server.engine) == before + 1  # started: the job goes on
        deadline = time.monotonic() + 60  # its image is made (the seeded queue holds no ticket)
        while (status := api.get(f"/jobs/{job['job_id']}").json()["status"]) in {"queued", "running"}:
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status == "succeeded"


def test_the_openapi_document_names_the_queue_and_retry_after(local_server: LocalServer) -> None:
    document = httpx.get(f"{local_server.url}/openapi.json", timeout=30).json()
    handed_over = document["paths"]["/images"]["post"]["responses"]["202"]
    assert "Retry-After" in handed_over["headers"]
    queue = document["components"]["schemas"]["QueueAhead"]
    assert set(queue["properties"]) == {"ahead", "estimated_seconds"}
    refused = document["paths"]["/v1/images/generations"]["post"]["responses"]["429"]
    assert "queue" in refused["description"] and "Retry-After" in refused["headers"]
