"""The simulation's slots (imagegen/testing/memory_slots.py) against DynamoDB's (moto): the same
random sequence of takes, releases, deaths and clock steps through the one Semaphore gives the same
answers and the same state on both stores, so the simulation runs the algorithm the Lambda runs."""

from __future__ import annotations

import random
from typing import Any

import boto3
import pytest
from image_pipeline.core.admission import DynamoSlotStore, NoSlot, Semaphore
from moto import mock_aws

from imagegen.runtime.moto_atomic_writes import atomic_writes
from imagegen.testing.memory_slots import MemorySlotStore


def outcome(semaphore: Semaphore, op: tuple[str, ...], now: float) -> Any:
    kind, model, holder = op
    if kind == "release":
        return ("released", semaphore.release(model, holder))
    try:
        granted = semaphore.acquire(model, holder, 3, now)
    except NoSlot:
        return ("no-slot", semaphore.last_waiting)
    return ("granted", granted.in_use, granted.reclaimed, granted.waited_seconds)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_memory_store_answers_as_dynamodb_does(aws_credentials: None, seed: int) -> None:
    rng = random.Random(seed)
    holders = [f"job{j}#{i}" for j in range(4) for i in range(3)]
    ops = [
        (rng.choice(["acquire", "acquire", "release"]), rng.choice(["core", "ultra"]), rng.choice(holders))
        for _ in range(300)
    ]
    with mock_aws(), atomic_writes():
        client = boto3.client("dynamodb", region_name="us-west-2")
        client.create_table(
            TableName="slots",
            AttributeDefinitions=[{"AttributeName": "model", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "model", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamo = Semaphore(DynamoSlotStore(client, "slots"), lease_seconds=50)
        memory_store = MemorySlotStore()
        memory = Semaphore(memory_store, lease_seconds=50)
        now = 0.0
        for op in ops:
            now += rng.choice([0.0, 1.0, 7.0])  # leases of 50 s expire now and then: dead holders
            assert outcome(dynamo, op, now) == outcome(memory, op, now), (op, now)
        for model in ("core", "ultra"):
            assert dynamo.store.read(model) == memory_store.read(model)
