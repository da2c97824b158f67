"""Admission control through the ASL offline (moto's interpreter, DynamoDB in moto, the stand-in with
a quota): branches of several executions take, wait for and give back their model's slots, so the
stand-in never sees more calls in flight than the quota and no image is throttled; a slot held by a
branch that died comes back when its lease expires; a failed call gives its slot back too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from image_pipeline.core.admission import DynamoSlotStore
from image_pipeline.core.cancellation import mark_cancelled

from imagegen.runtime.engine import ADMISSION_TABLE, ADMISSION_WAITERS_TABLE, REGION
from imagegen.standin.bedrock_server import FaultPlan
from tests.workflow.test_workflow import states_entered

MODEL = "stable-image-core"
BEDROCK_ID = "stability.stable-image-core-v1:1"


@pytest.fixture
def quota_of_two(engine: Any) -> Iterator[Any]:
    engine.reset_admission()  # no slot or ticket left by another test
    engine.set_quotas(model_concurrency={MODEL: 2}, bedrock={MODEL: 2})
    engine.bedrock.faults = FaultPlan(latency_seconds=0.2)
    engine.bedrock.reset_counters()
    yield engine
    engine.set_quotas(model_concurrency={}, bedrock={})
    engine.reset_admission()  # the slots these tests planted (one held for an hour) are not the next test's


def slots() -> dict[str, Any]:
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=ADMISSION_TABLE, Key={"model": {"S": MODEL}}, ConsistentRead=True
    )
    return item.get("Item", {})


def tickets() -> list[str]:
    """The holders of the tickets left in the model's queue (branches still waiting)."""
    store = DynamoSlotStore(
        boto3.client("dynamodb", region_name=REGION), ADMISSION_TABLE, ADMISSION_WAITERS_TABLE
    )
    return [ticket.holder for ticket in store.oldest(MODEL, 100)]


def test_executions_share_the_models_slots(quota_of_two: Any) -> None:
    engine = quota_of_two
    arns = [
        engine.start_execution({"prompt": f"a lighthouse {i}", "count": 4, "model": MODEL}) for i in range(3)
    ]
    results = [engine.wait(arn, timeout=120) for arn in arns]
    assert [r.status for r in results] == ["SUCCEEDED"] * 3
    assert all(r.output["succeeded"] == 4 for r in results)
    stats = engine.bedrock.stats()
    assert stats["over_quota"] == 0 and stats["outcomes"] == {"success": 12}
    assert stats["max_in_flight_by_model"][BEDROCK_ID] <= 2
    item = slots()
    assert item["in_use"] == {"N": "0"}
    assert not [k for k in item if k.startswith("lease:")] and tickets() == []
    entered = states_entered(engine, results[0])
    assert {"AcquireSlot", "GenerateImage", "ReleaseSlot"} <= set(entered)


def test_a_dead_holders_slot_is_recovered_by_its_lease(quota_of_two: Any) -> None:
    engine = quota_of_two
    engine.set_quotas(model_concurrency={MODEL: 1}, bedrock={MODEL: 1})
    expires = time.time() + 2.0  # a branch that took the only slot, then its execution was stopped
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=ADMISSION_TABLE,
        Item={"model": {"S": MODEL}, "in_use": {"N": "1"}, "lease:killed#0": {"N": repr(expires)}},
    )
    began = time.time()
    result = engine.run({"prompt": "after the crash", "count": 2, "model": MODEL}, timeout=120)
    assert result.status == "SUCCEEDED" and result.output["succeeded"] == 2
    assert time.time() - began >= 1.5  # it waited for the lease
    assert engine.bedrock.stats()["over_quota"] == 0
    item = slots()
    assert item["in_use"] == {"N": "0"} and "lease:killed#0" not in item


def test_a_failed_call_gives_its_slot_back(quota_of_two: Any) -> None:
    engine = quota_of_two
    result = engine.run({"prompt": "denied [[fault:denied]]", "count": 2, "model": MODEL}, timeout=120)
    assert result.status == "FAILED"
    assert "ReleaseSlotAfterFailure" in states_entered(engine, result)
    assert slots()["in_use"] == {"N": "0"}


def test_a_cancelled_jobs_waiting_branches_stop_waiting(quota_of_two: Any) -> None:
    """Every slot is held by another job's branch for the next hour; this job is cancelled while its
    branches wait in the queue: the keeper's round (offline every second) wakes their tickets with
    ``cancelled`` and they end CANCELLED without a model call (without it they would wait for the
    lease, past this test's timeout)."""
    engine = quota_of_two
    engine.set_quotas(model_concurrency={MODEL: 1}, bedrock={MODEL: 1})
    boto3.client("dynamodb", region_name=REGION).put_item(
        TableName=ADMISSION_TABLE,
        Item={"model": {"S": MODEL}, "in_use": {"N": "1"}, "lease:other#0": {"N": repr(time.time() + 3600)}},
    )
    arn = engine.start_execution({"prompt": "cancelled while waiting", "count": 3, "model": MODEL})
    time.sleep(1.0)  # its branches have asked for a slot and wait
    mark_cancelled(engine.s3, engine.config.bucket, arn.rsplit(":", 1)[-1])
    result = engine.wait(arn, timeout=90)
    assert result.status == "SUCCEEDED", result.output
    assert result.output["cancelled"] is True
    assert [image["reason_code"] for image in result.output["images"]] == ["CANCELLED"] * 3
    assert engine.bedrock.stats()["invocations"] == 0
    item = slots()
    assert item["in_use"] == {"N": "1"} and "lease:other#0" in item  # the other job's slot untouched
    assert tickets() == []  # no ticket left behind
