"""The daily spend ledger (core/spend.py) on moto's DynamoDB, in the image index's table as deployed:
its arithmetic (micro-dollars, reserve then settle), its conditions (the ceiling, a reservation
idempotent by execution, a settle counted once), two reservations at once near the ceiling, the
caller's own ceiling over the deployment's, and the day it counts on; and start_job's side (429 with
Retry-After, a reservation given back when nothing started, a replay answered past the ceiling)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from image_pipeline.contract.errors import SpendLimitExceeded
from image_pipeline.core.cost import request_cost
from image_pipeline.core.execution_input import ExecutionInput, read_execution_input
from image_pipeline.core.index_keys import table_definition
from image_pipeline.core.jobs import ApiError, start_job
from image_pipeline.core.spend import (
    COMMITTED,
    SETTLED,
    SpendLedger,
    estimate_usd,
    reserve_planned,
    resets_at,
    settle_manifest,
    settled_usd,
    to_micro,
)
from image_pipeline.core.tenancy import Caller, execution_name
from image_pipeline.models.prices import model_price_document
from moto import mock_aws

from imagegen.runtime.moto_atomic_writes import atomic_writes

TABLE = "index"
NS = "0123456789ab"
NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DAY = "2026-11-30"


@pytest.fixture
def dynamodb(aws_credentials: None) -> Iterator[Any]:
    # DynamoDB applies a conditional write atomically; moto needs the engine's lock for that.
    with mock_aws(), atomic_writes():
        client = boto3.client("dynamodb", region_name="us-west-2")
        client.create_table(TableName=TABLE, **table_definition())
        yield client


def ledger(client: Any, limit: float | None = 1.0) -> SpendLedger:
    return SpendLedger(client, TABLE, default_limit_usd=limit, default_model="stable-image-core")


def test_micro_dollars_round_up_and_the_estimate_is_the_cost_models() -> None:
    assert to_micro(0.04) == 40_000
    assert to_micro(0.0000001) == 1  # an estimate never rounds down to nothing
    assert to_micro(0.0) == 0
    price = float(model_price_document("stable-image-core")["usd_per_image"])  # type: ignore[index, arg-type]
    four = request_cost([{"status": "SUCCEEDED"}] * 4, {}, registry_id="stable-image-core", quality=None)
    assert estimate_usd("stable-image-core", None, 4) == four["total_usd"]
    assert estimate_usd("stable-image-core", None, 4) > 4 * price  # plus the workflow's estimate
    # a Bedrock model id prices as its registry id
    assert estimate_usd("stability.stable-image-core-v1:1", None, 1) == estimate_usd(
        "stable-image-core", None, 1
    )
    assert resets_at(DAY) == datetime(2026, 12, 1, tzinfo=UTC)


def test_reserve_then_settle_to_the_actual_cost(dynamodb: Any) -> None:
    book = ledger(dynamodb)
    hold = book.reserve(NS, "job-a", 0.16, now=NOON)
    assert hold is not None and hold.created and hold.day == DAY and hold.micro_usd == 160_000
    assert book.read_day(NS, DAY) == {COMMITTED: 160_000, "hold:job-a": 160_000}
    assert book.settle(NS, DAY, "job-a", 0.04)  # one image made of four
    assert book.read_day(NS, DAY) == {COMMITTED: 40_000, SETTLED: 40_000}
    assert not book.settle(NS, DAY, "job-a", 0.04)  # settled twice: counted once
    assert book.read_day(NS, DAY) == {COMMITTED: 40_000, SETTLED: 40_000}


def test_the_ceiling_refuses_what_would_pass_it_and_says_what_is_left(dynamodb: Any) -> None:
    book = ledger(dynamodb, 1.0)
    book.reserve(NS, "job-a", 0.7, now=NOON)
    book.reserve(NS, "job-b", 0.3, now=NOON)  # exactly at the ceiling: allowed
    with pytest.raises(SpendLimitExceeded) as refused:
        book.reserve(NS, "job-c", 0.000001, now=NOON)
    assert "$0.000000 of today's $1.00 is left" in str(refused.value)
    assert "resets at 2026-12-01T00:00:00Z" in str(refused.value)
    assert refused.value.resets_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert book.read_day(NS, DAY)[COMMITTED] == 1_000_000  # the refusal changed nothing
    book.settle(NS, DAY, "job-a", 0.5)  # settling below the estimate gives room back
    book.reserve(NS, "job-c", 0.2, now=NOON)
    with pytest.raises(SpendLimitExceeded, match=r"\$0\.000000 of today's"):
        book.reserve(NS, "job-d", 0.01, now=NOON)


def test_an_estimate_over_the_whole_ceiling_is_refused_without_a_write(dynamodb: Any) -> None:
    book = ledger(dynamodb, 0.1)
    with pytest.raises(SpendLimitExceeded, match=r"estimated at \$0\.200000, \$0\.100000 of today's \$0\.10"):
        book.reserve(NS, "job-a", 0.2, now=NOON)
    assert book.read_day(NS, DAY) == {}


def test_a_reservation_is_idempotent_by_execution(dynamodb: Any) -> None:
    book = ledger(dynamodb, 1.0)
    first = book.reserve(NS, "job-a", 0.6, now=NOON)
    again = book.reserve(NS, "job-a", 0.6, now=NOON)  # a replay, or a retried write whose answer was lost
    assert first is not None and first.created
    assert again is not None and not again.created and again.micro_usd == 600_000
    assert book.read_day(NS, DAY)[COMMITTED] == 600_000
    # the same holder is found even when the total is at the ceiling
    book.reserve(NS, "job-b", 0.4, now=NOON)
    assert book.reserve(NS, "job-a", 0.6, now=NOON) is not None


def test_two_reservations_at_once_near_the_ceiling_never_both_pass(dynamodb: Any) -> None:
    book = ledger(dynamodb, 1.0)
    book.reserve(NS, "job-0", 0.9, now=NOON)  # $0.10 left
    for attempt in range(20):
        outcomes: list[str] = []
        barrier = threading.Barrier(2)

        def take(holder: str, barrier: threading.Barrier = barrier, outcomes: list[str] = outcomes) -> None:
            barrier.wait()
            try:
                book.reserve(NS, holder, 0.06, now=NOON)
                outcomes.append("reserved")
            except SpendLimitExceeded:
                outcomes.append("refused")

        threads = [threading.Thread(target=take, args=(f"job-{attempt}-{i}",)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["refused", "reserved"]
        assert book.read_day(NS, DAY)[COMMITTED] == 960_000
        # give the winner's back for the next round
        winner = next(h for h in book.read_day(NS, DAY) if h.startswith(f"hold:job-{attempt}-"))
        assert book.settle(NS, DAY, winner.removeprefix("hold:"), 0.0)
    assert book.read_day(NS, DAY)[COMMITTED] == 900_000


def test_a_callers_own_ceiling_overrides_the_deployments(dynamodb: Any) -> None:
    book = ledger(dynamodb, None)
    assert book.reserve(NS, "job-a", 100.0, now=NOON) is None  # no ceiling anywhere: nothing recorded
    assert book.read_day(NS, DAY) == {}
    book.set_limit(NS, 0.05)
    with pytest.raises(SpendLimitExceeded, match=r"today's \$0\.05"):
        book.reserve(NS, "job-b", 0.06, now=NOON)
    other = "ba9876543210"
    assert ledger(dynamodb, 10.0).reserve(other, "job-c", 5.0, now=NOON) is not None  # the default, not 0.05
    with pytest.raises(SpendLimitExceeded):
        ledger(dynamodb, 10.0).reserve(NS, "job-d", 5.0, now=NOON)  # NS's own 0.05 wins over 10
    book.forget_limit(NS)
    assert ledger(dynamodb, 10.0).reserve(NS, "job-d", 5.0, now=NOON) is not None
    with pytest.raises(ValueError, match="positive"):
        book.set_limit(NS, 0)


def test_each_utc_day_has_its_own_total(dynamodb: Any) -> None:
    book = ledger(dynamodb, 1.0)
    book.reserve(NS, "job-a", 1.0, now=datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC))
    tomorrow = book.reserve(NS, "job-b", 1.0, now=datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC))
    assert tomorrow is not None and tomorrow.day == "2026-12-01"
    # a job settles on the day it reserved on, whenever it ends
    assert book.settle(NS, DAY, "job-a", 0.25)
    assert book.read_day(NS, DAY)[COMMITTED] == 250_000
    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": f"SPEND#{NS}"}, "sk": {"S": f"DAY#{DAY}"}})[
        "Item"
    ]
    assert int(item["expires_at"]["N"]) > int(resets_at(DAY).timestamp())  # kept a while, then TTL


def test_the_workflow_reserves_what_no_entry_point_did_and_settles_from_the_manifest(dynamodb: Any) -> None:
    book = ledger(dynamodb, 1.0)
    planned = {
        "caller_namespace": NS,
        "execution_name": "console-run",
        "model": "stable-image-core",
        "request": {"prompt": "x"},
        "images": [{"index": i} for i in range(4)],
    }
    spend = reserve_planned(book, planned, None, now=NOON)
    assert spend == {"day": DAY, "micro_usd": to_micro(estimate_usd("stable-image-core", None, 4))}
    given = {"day": "2026-11-29", "micro_usd": 5}
    assert reserve_planned(book, planned, given, now=NOON) == given  # the API reserved it: not again
    images = [{"status": "SUCCEEDED", "cached": True}, {"status": "FAILED"}, {"status": "CANCELLED"}]
    cost = request_cost(images, {}, registry_id="stable-image-core", quality=None)
    assert cost["model_usd"] == 0  # cached, failed and cancelled images cost the model nothing
    assert settle_manifest(book, {**planned, "spend": spend}, {"cost": cost})
    assert book.read_day(NS, DAY) == {
        COMMITTED: to_micro(settled_usd(cost)),
        SETTLED: to_micro(settled_usd(cost)),
    }
    assert not settle_manifest(book, {**planned, "spend": None}, {"cost": cost})
    with pytest.raises(SpendLimitExceeded):
        reserve_planned(book, {**planned, "execution_name": "big", "images": [{}] * 40}, None, now=NOON)


# -- start_job: the entry points' side --------------------------------------------------------------


class FakeSfn:
    """Step Functions as start_job sees it: ended executions by name; ``refuse`` makes StartExecution fail."""

    def __init__(self) -> None:
        self.executions: dict[str, str] = {}
        self.refuse: str | None = None

    def start_execution(self, *, stateMachineArn: str, name: str, input: str) -> dict[str, Any]:
        if self.refuse:
            raise ClientError({"Error": {"Code": self.refuse, "Message": "x"}}, "StartExecution")
        if name in self.executions:  # its executions have ended: the name is taken
            raise ClientError({"Error": {"Code": "ExecutionAlreadyExists", "Message": "x"}}, "StartExecution")
        self.executions[name] = input
        return {}

    def describe_execution(self, *, executionArn: str) -> dict[str, Any]:
        name = executionArn.rsplit(":", 1)[1]
        if name not in self.executions:
            raise ClientError(
                {"Error": {"Code": "ExecutionDoesNotExist", "Message": "x"}}, "DescribeExecution"
            )
        return {"status": "SUCCEEDED", "input": self.executions[name]}


ARN = "arn:aws:states:us-west-2:123456789012:stateMachine:jobs"
ALICE = Caller("apiKey", "alice")


def test_start_job_reserves_writes_where_and_answers_429_with_retry_after(dynamodb: Any) -> None:
    sfn, book = FakeSfn(), ledger(dynamodb, 0.2)
    request = {"prompt": "a lighthouse", "count": 4}
    started = start_job(sfn, ARN, ExecutionInput(request, ALICE), "k1", ledger=book, now=NOON)
    stored = read_execution_input(json.loads(sfn.executions[execution_name(ALICE, "k1")]))
    assert started.created and stored.spend == {
        "day": DAY,
        "micro_usd": to_micro(estimate_usd("stable-image-core", None, 4)),
    }
    with pytest.raises(ApiError) as refused:
        start_job(sfn, ARN, ExecutionInput(request, ALICE), "k2", ledger=book, now=NOON)
    assert refused.value.status == 429 and refused.value.error == "SpendLimitExceeded"
    assert refused.value.headers == {"Retry-After": str(12 * 3600)}
    assert "resets at 2026-12-01T00:00:00Z" in refused.value.message
    assert execution_name(ALICE, "k2") not in sfn.executions
    # the replay of k1 is its job, ceiling or not
    again = start_job(sfn, ARN, ExecutionInput(request, ALICE), "k1", ledger=book, now=NOON)
    assert not again.created
    # ... and on the next day too (its input's spend day differs; the day's new hold is given back)
    next_day = datetime(2026, 12, 1, 1, tzinfo=UTC)
    again = start_job(sfn, ARN, ExecutionInput(request, ALICE), "k1", ledger=book, now=next_day)
    assert not again.created
    assert book.read_day(ALICE.namespace, "2026-12-01").get(COMMITTED, 0) == 0


def test_a_start_step_functions_refuses_gives_its_reservation_back(dynamodb: Any) -> None:
    sfn, book = FakeSfn(), ledger(dynamodb, 1.0)
    sfn.refuse = "ThrottlingException"
    with pytest.raises(ApiError) as busy:
        start_job(sfn, ARN, ExecutionInput({"prompt": "x"}, ALICE), None, ledger=book, now=NOON)
    assert busy.value.status == 429 and busy.value.error == "TooManyRequests"
    assert book.read_day(ALICE.namespace, DAY) == {COMMITTED: 0, SETTLED: 0}  # given back: no hold
