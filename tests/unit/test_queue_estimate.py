"""The estimate of a request's wait behind its model's queue (issue 15): the pure
``core/admission.estimate_queue`` and the reader ``core/admission_runtime.read_queue_estimate`` (one
GetItem of the queue's counter in moto's DynamoDB; None when admission control is off or the read
fails, never an error)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from image_pipeline.core.admission import (
    QUEUE_KEY,
    SECONDS_PER_CALL_ASSUMED,
    WAITING_COUNTER_PLACE,
    DynamoSlotStore,
    InvalidQuota,
    Ticket,
    estimate_queue,
)
from image_pipeline.core.admission_runtime import read_queue_estimate
from image_pipeline.core.settings import Settings
from moto import mock_aws

from imagegen.runtime.engine import ADMISSION_TABLE, ADMISSION_WAITERS_TABLE, create_admission_table

REGION = "us-west-2"


# -- the estimate ------------------------------------------------------------------------------------


def test_rounds_of_the_models_slots_times_the_seconds_a_call() -> None:
    queue = estimate_queue("stable-image-core", ahead=10, images=3, limit=2)
    assert queue.rounds == 7  # ceil(13 / 2): the request's last image starts in the 7th turn
    assert queue.seconds == 7 * SECONDS_PER_CALL_ASSUMED == 42
    assert queue.document() == {"ahead": 10, "estimated_seconds": 42}


@pytest.mark.parametrize(
    ("ahead", "images", "limit", "rounds"),
    [(0, 1, 1, 1), (0, 4, 9, 1), (9, 1, 9, 2), (8, 1, 9, 1), (100, 40, 1, 140), (5, 5, 10, 1)],
)
def test_rounds_at_the_limits(ahead: int, images: int, limit: int, rounds: int) -> None:
    assert estimate_queue("m", ahead, images, limit).rounds == rounds


def test_a_fractional_call_gives_whole_seconds() -> None:
    # Retry-After is a whole number of seconds (RFC 9110's delay-seconds): rounded up.
    assert estimate_queue("m", 2, 1, 1, seconds_per_call=2.5).seconds == 8


def test_it_outlasts_a_wait_only_behind_a_queue() -> None:
    assert estimate_queue("m", 10, 3, 2).outlasts(25)
    assert not estimate_queue("m", 10, 3, 2).outlasts(42)  # ends as the wait does: worth waiting
    assert not estimate_queue("m", 1, 1, 9).outlasts(25)  # a short queue
    # No queue: the request's own images start at once, however many; never handed over or refused
    # for its own size (a refusal would be repeated on every try).
    nothing_ahead = estimate_queue("m", 0, 40, 1)
    assert nothing_ahead.seconds == 240 and not nothing_ahead.outlasts(25)


def test_a_counter_below_zero_is_no_queue() -> None:
    assert estimate_queue("m", -3, 1, 1).ahead == 0


@pytest.mark.parametrize(
    ("images", "limit", "seconds_per_call", "error"),
    [(1, 0, 6, InvalidQuota), (1, -1, 6, InvalidQuota), (0, 1, 6, ValueError), (1, 1, 0, ValueError)],
)
def test_impossible_inputs_are_refused(
    images: int, limit: int, seconds_per_call: float, error: type[Exception]
) -> None:
    with pytest.raises(error):
        estimate_queue("m", 1, images, limit, seconds_per_call=seconds_per_call)


# -- the reader --------------------------------------------------------------------------------------


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "images_bucket": "queue-estimate-bucket",
        "admission_table": ADMISSION_TABLE,
        "admission_waiters_table": ADMISSION_WAITERS_TABLE,
        "model_concurrency": {"stable-image-core": 2},
        "allowed_models": "stable-image-core,nova-canvas",
    }
    return Settings.model_validate({**values, **overrides})


@pytest.fixture
def dynamodb(aws_credentials: None) -> Iterator[Any]:
    """moto's DynamoDB with admission control's two tables (as the offline engine makes them)."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        if ADMISSION_WAITERS_TABLE not in client.list_tables()["TableNames"]:
            create_admission_table(client)
        yield client
        for model in ("stable-image-core", "nova-canvas"):  # the session engine's mock may share them
            key = {QUEUE_KEY: {"S": model}, "place": {"S": WAITING_COUNTER_PLACE}}
            client.delete_item(TableName=ADMISSION_WAITERS_TABLE, Key=key)


def test_the_reader_counts_the_tickets_the_queue_holds(dynamodb: Any) -> None:
    store = DynamoSlotStore(dynamodb, ADMISSION_TABLE, ADMISSION_WAITERS_TABLE)
    for index in range(5):  # five branches queued as the Admission function queues them
        store.enqueue("stable-image-core", Ticket(f"job#{index}", f"token-{index}", f"2026#job#{index}", 0.0))
    queue = read_queue_estimate(settings(), lambda: dynamodb, {"prompt": "x", "count": 3})
    assert queue is not None
    assert (queue.model, queue.ahead, queue.images, queue.limit) == ("stable-image-core", 5, 3, 2)
    assert queue.seconds == 4 * SECONDS_PER_CALL_ASSUMED  # ceil(8 / 2) rounds
    for index in range(5):
        store.claim("stable-image-core", Ticket(f"job#{index}", f"token-{index}", f"2026#job#{index}", 0.0))


def test_the_reader_names_the_model_as_admission_does(dynamodb: Any) -> None:
    # A Bedrock model id is the registry id's queue; no count is the API's default (4); a model with
    # no configured quota gets the conservative default of its documented one (nova-canvas: 10).
    request = {"prompt": "x", "model": "amazon.nova-canvas-v1:0"}
    queue = read_queue_estimate(settings(), lambda: dynamodb, request)
    assert queue is not None
    assert (queue.model, queue.ahead, queue.images, queue.limit) == ("nova-canvas", 0, 4, 10)


def test_admission_off_reads_nothing() -> None:
    def no_client() -> Any:
        raise AssertionError("no table to read: no client either")

    off = settings(admission_table="", admission_waiters_table="")
    assert read_queue_estimate(off, no_client, {"prompt": "x"}) is None


def test_a_failed_read_never_fails_the_request() -> None:
    class Failing:
        def get_item(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetItem")

    told: list[Exception] = []
    queue = read_queue_estimate(settings(), Failing, {"prompt": "x"}, on_error=told.append)
    assert queue is None
    assert [type(e).__name__ for e in told] == ["ClientError"]


def test_a_missing_table_is_a_failed_read(dynamodb: Any) -> None:
    missing = settings(admission_waiters_table="no-such-waiters-table")
    told: list[Exception] = []
    assert read_queue_estimate(missing, lambda: dynamodb, {"prompt": "x"}, on_error=told.append) is None
    assert len(told) == 1


def test_a_model_not_offered_is_not_estimated(dynamodb: Any) -> None:
    # The request was checked before; a model the check would refuse is simply not estimated.
    assert (
        read_queue_estimate(settings(), lambda: dynamodb, {"prompt": "x", "model": "titan-image-v2"}) is None
    )
