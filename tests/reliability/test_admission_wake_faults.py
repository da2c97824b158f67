"""Admission control's queue through the offline engine (the ASL in moto's interpreter, the handlers,
DynamoDB in moto, the Bedrock stand-in with a quota of one call in flight) when waking a branch fails.

``SendTaskSuccess`` is refused (Step Functions throttling, HTTP 400: the branch was not woken; the
hand-over is undone and the release retried, or AcquireSlot asked again) or its answer is lost after it
woke the branch (an internal error, HTTP 500: the hand-over stands). Every job still succeeds, the
stand-in never sees two calls in flight, and the slots and the queue end empty."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from image_pipeline.core import clients
from image_pipeline.core.admission import DynamoSlotStore

from imagegen.runtime.engine import ADMISSION_TABLE, ADMISSION_WAITERS_TABLE, REGION

MODEL = "stable-image-core"
BEDROCK_ID = "stability.stable-image-core-v1:1"


def failure(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "SendTaskSuccess")


class WakeFaults:
    """The Admission functions' Step Functions client; the planned ``granted`` wake-ups fail: a
    branch's own (the take found a slot: its output names the limit) or a hand-off's."""

    def __init__(self, client: Any, *, own: dict[int, str], hand_offs: dict[int, str]) -> None:
        self.client = client
        self.plans = {"own": own, "hand_off": hand_offs}
        self.counts = {"own": 0, "hand_off": 0}
        self.done: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def send_task_success(self, **kwargs: Any) -> Any:
        output = json.loads(kwargs["output"])
        fault = None
        if output.get("admission") == "granted":
            kind = "own" if "limit" in output else "hand_off"
            with self.lock:
                fault = self.plans[kind].get(self.counts[kind])
                self.counts[kind] += 1
                if fault:
                    self.done.append((kind, fault))
        if fault == "refused":
            raise failure("ThrottlingException", 400)
        answer = self.client.send_task_success(**kwargs)
        if fault == "lost":
            raise failure("InternalFailure", 500)
        return answer


@pytest.fixture
def one_call_in_flight(engine: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[WakeFaults]:
    engine.reset_admission()  # no slot or ticket left by another test
    engine.set_quotas(model_concurrency={MODEL: 1}, bedrock={MODEL: 1})
    engine.bedrock.reset_counters()
    real = clients.admission_stepfunctions()
    faults = WakeFaults(
        real, own={0: "refused"}, hand_offs={0: "refused", 1: "lost", 3: "refused", 4: "lost"}
    )
    monkeypatch.setattr(clients, "admission_stepfunctions", functools.cache(lambda: faults))
    yield faults
    engine.set_quotas(model_concurrency={}, bedrock={})


def test_jobs_succeed_within_the_quota_when_wake_ups_fail(
    engine: Any, one_call_in_flight: WakeFaults
) -> None:
    arns = [
        engine.start_execution({"prompt": f"a harbour at dawn {i}", "count": 2, "model": MODEL})
        for i in range(3)
    ]
    results = [engine.wait(arn, timeout=120) for arn in arns]
    assert [r.status for r in results] == ["SUCCEEDED"] * 3, [r.message for r in results]
    assert [r.output["succeeded"] for r in results] == [2, 2, 2]
    # every planned fault happened (else this proves nothing about them)
    assert sorted(one_call_in_flight.done) == sorted(
        [
            ("own", "refused"),
            ("hand_off", "refused"),
            ("hand_off", "lost"),
            ("hand_off", "refused"),
            ("hand_off", "lost"),
        ]
    )
    stats = engine.bedrock.stats()
    assert stats["over_quota"] == 0 and stats["outcomes"] == {"success": 6}
    assert stats["max_in_flight_by_model"][BEDROCK_ID] == 1
    store = DynamoSlotStore(
        boto3.client("dynamodb", region_name=REGION), ADMISSION_TABLE, ADMISSION_WAITERS_TABLE
    )
    state = store.read(MODEL)
    assert state.in_use == 0 and not state.leases
    assert store.oldest(MODEL, 100) == [] and store.waiting(MODEL) == 0
