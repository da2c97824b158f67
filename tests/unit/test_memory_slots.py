"""The simulation's store (imagegen/testing/memory_slots.py) against DynamoDB's (moto, the two tables
the stack deploys): the same random sequence of store steps (take, give_back, hand_over, enqueue,
oldest, claim, requeue) gives the same answers and leaves the same slots and queues on both; and the
one Semaphore driven through the same acquires, releases, fills and sweeps sends the same wake-ups.
So the simulation (benchmarks/simulation.py) runs the algorithm the Lambda runs, on the same store."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
from image_pipeline.core.admission import DynamoSlotStore, NoSlot, Semaphore, Ticket, ticket_place
from moto import mock_aws

from imagegen.runtime.engine import ADMISSION_TABLE, ADMISSION_WAITERS_TABLE, create_admission_table
from imagegen.runtime.moto_atomic_writes import atomic_writes
from imagegen.testing.memory_slots import MemorySlotStore

MODELS = ("core", "ultra")
HOLDERS = [f"job{j}#{i}" for j in range(4) for i in range(3)]
LIMIT = 3


@pytest.fixture
def dynamo(aws_credentials: None) -> Iterator[DynamoSlotStore]:
    with mock_aws(), atomic_writes():
        client = boto3.client("dynamodb", region_name="us-west-2")
        create_admission_table(client)
        yield DynamoSlotStore(client, ADMISSION_TABLE, ADMISSION_WAITERS_TABLE)


def snapshot(store: Any) -> dict[str, Any]:
    """Everything a store holds: each model's slots, queue and counter of tickets."""
    return {model: (store.read(model), store.oldest(model, 100), store.waiting(model)) for model in MODELS}


def place(holder: str) -> str:
    job = int(holder[3])
    return ticket_place(f"2026-11-30T10:00:0{3 - job}.000Z", holder, 0.0)  # later jobs started earlier


class Steps:
    """Random store steps; tickets carry numbered tokens, so a claim or a requeue may name a ticket
    whose place has a newer token since (a branch that waited again)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.issued: list[Ticket] = []
        self.expiries = [100.0, 200.0, 300.5]

    def ticket(self) -> Ticket:
        rng = self.rng
        if self.issued and rng.random() < 0.6:
            return rng.choice(self.issued)
        holder = rng.choice(HOLDERS)
        issued = Ticket(holder, f"token-{len(self.issued)}", place(holder), float(len(self.issued)))
        self.issued.append(issued)
        return issued

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        rng = self.rng
        for _ in range(400):
            model, holder, other = rng.choice(MODELS), rng.choice(HOLDERS), rng.choice(HOLDERS)
            kind = rng.choice(
                ["take", "take", "give_back", "hand_over", "enqueue", "enqueue", "oldest", "claim", "requeue"]
            )
            if kind == "take":
                yield kind, model, holder, LIMIT, rng.choice(self.expiries)
            elif kind == "give_back":
                yield kind, model, holder, rng.choice([None, *self.expiries])
            elif kind == "hand_over":
                yield kind, model, holder, other, rng.choice(self.expiries)
            elif kind == "oldest":
                yield kind, model, rng.randint(0, 5)
            else:
                yield kind, model, self.ticket()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_memory_store_answers_each_step_as_dynamodb_does(dynamo: DynamoSlotStore, seed: int) -> None:
    memory = MemorySlotStore()
    answers: set[str] = set()
    for kind, *args in Steps(seed):
        expected = getattr(dynamo, kind)(*args)
        assert getattr(memory, kind)(*args) == expected, (kind, args)
        answers.add(
            f"{kind}:{type(expected).__name__}:{expected if isinstance(expected, bool | str) else ''}"
        )
    assert snapshot(memory) == snapshot(dynamo)
    # the sequence reached the interesting answers (else the comparison proves little)
    for answer in (
        "take:Taken:",
        "take:SlotState:",
        "give_back:bool:True",
        "give_back:bool:False",
        "hand_over:str:moved",
        "hand_over:str:taker_holds",
        "hand_over:str:giver_gone",
        "enqueue:bool:True",
        "enqueue:bool:False",
        "claim:bool:True",
        "claim:bool:False",
    ):
        assert answer in answers, answer


class Wakes:
    """A recording SendTaskSuccess; tokens whose number is a multiple of 5 belong to branches that no
    longer wait."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, token: str, output: Mapping[str, Any]) -> bool:
        self.sent.append((token, dict(output)))
        return int(token.rsplit("-", 1)[1]) % 5 != 0


def drive(store: Any, seed: int) -> tuple[list[Any], Wakes]:
    """The Admission function's calls, from a seeded sequence, through one Semaphore over ``store``."""
    rng = random.Random(seed)
    semaphore, wakes, answers = Semaphore(store, lease_seconds=40), Wakes(), []

    def cancelled(execution: str) -> bool:
        return execution == "job3"

    now = 0.0
    for step in range(300):
        now += rng.choice([0.0, 1.0, 7.0])  # leases of 40 s expire now and then: dead holders
        kind, model, holder = (
            rng.choice(["acquire", "acquire", "release", "fill", "sweep"]),
            *rng.choice([(m, h) for m in MODELS for h in HOLDERS]),
        )
        if kind == "acquire":
            ticket = Ticket(holder, f"token-{step}", place(holder), now)
            try:
                granted = semaphore.acquire(model, ticket, LIMIT, now, notify=wakes, cancelled=cancelled)
            except NoSlot:
                granted = None
            answers.append(granted)
        elif kind == "release":
            answers.append(semaphore.release(model, holder, LIMIT, now, notify=wakes, cancelled=cancelled))
        else:
            getattr(semaphore, kind)(model, LIMIT, now, notify=wakes, cancelled=cancelled)
    answers.append(semaphore.report)
    return answers, wakes


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_the_semaphore_does_the_same_on_both_stores(dynamo: DynamoSlotStore, seed: int) -> None:
    memory = MemorySlotStore()
    on_dynamo, dynamo_wakes = drive(dynamo, seed)
    on_memory, memory_wakes = drive(memory, seed)
    assert on_memory == on_dynamo
    assert memory_wakes.sent == dynamo_wakes.sent
    assert snapshot(memory) == snapshot(dynamo)
    outputs = {output["admission"] for _, output in dynamo_wakes.sent}
    assert outputs == {"granted", "cancelled"}  # hand-offs and cancellations both happened
    report = on_dynamo[-1]
    assert report.woken and report.stale and report.cancelled


def test_the_memory_store_counts_requests() -> None:
    """The simulation's cost model: one write per take/give-back/hand-over, a ticket and its counter."""
    memory = MemorySlotStore()
    memory.take("core", "a#0", 1, 10.0)
    memory.take("core", "b#0", 1, 10.0)  # refused: still a write request (a conditional one)
    memory.give_back("core", "a#0", None)
    ticket = Ticket("job1#0", "t", place("job1#0"), 0.0)
    memory.enqueue("core", ticket)  # the ticket and the counter
    memory.enqueue("core", ticket)  # the same place again: the ticket only
    memory.claim("core", ticket)  # the delete and the counter
    memory.oldest("core", 1)
    memory.read("core")
    assert (memory.writes, memory.reads, memory.queue_writes, memory.queue_reads) == (3, 1, 5, 1)
