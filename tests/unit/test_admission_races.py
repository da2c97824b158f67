"""Races at the edge of a branch's wait (``core/admission.py``), on both stores (memory and moto's
DynamoDB): a slot handed to a branch whose wake-up finds its wait just timed out, while the branch's retry
of ``AcquireSlot`` finds that very slot. The branch is then calling its model: the slot must stay its,
never be given back or passed on under it (one call more in flight than the limit)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
from image_pipeline.core.admission import DynamoSlotStore, Granted, Semaphore, SlotStore, Taken, Ticket
from moto import mock_aws

from imagegen.runtime.engine import ADMISSION_TABLE, ADMISSION_WAITERS_TABLE, create_admission_table
from imagegen.runtime.moto_atomic_writes import atomic_writes
from imagegen.testing.memory_slots import MemorySlotStore

MODEL = "stable-image-core"
NOW = 1_000.0


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest, aws_credentials: None) -> Iterator[SlotStore]:
    if request.param == "memory":
        yield MemorySlotStore()
        return
    with mock_aws(), atomic_writes():
        client = boto3.client("dynamodb", region_name="us-west-2")
        if ADMISSION_TABLE not in client.list_tables()["TableNames"]:
            create_admission_table(client)
        yield DynamoSlotStore(client, ADMISSION_TABLE, ADMISSION_WAITERS_TABLE)


class RetryAtTimeout:
    """``notify``: the waiting branch's first token (``token1``) is dead because its wait has just timed
    out; its retry of AcquireSlot (token 2) runs at that moment and takes what it finds."""

    def __init__(self, semaphore: Semaphore, holder: str) -> None:
        self.semaphore, self.holder = semaphore, holder
        self.retry: Granted | None = None

    def __call__(self, token: str, output: Mapping[str, Any]) -> bool:
        if token == "token1":
            self.retry = self.semaphore.try_take(MODEL, self.holder, 1, NOW + 1)
            return False  # TaskTimedOut
        return True


def never(execution: str) -> bool:
    return False


def waiting_b() -> Ticket:
    return Ticket("exB#0", "token1", "2026-11-30T21:00:00.000Z#exB#0", NOW)


def test_a_release_does_not_pass_on_a_slot_whose_branch_found_it(store: SlotStore) -> None:
    semaphore = Semaphore(store)
    assert isinstance(store.take(MODEL, "exG#0", 1, NOW + 1800), Taken)  # G holds the only slot
    store.enqueue(MODEL, waiting_b())
    store.enqueue(MODEL, Ticket("exC#0", "tokenC", "2026-11-30T21:00:01.000Z#exC#0", NOW))  # C behind B
    notify = RetryAtTimeout(semaphore, "exB#0")
    semaphore.release(MODEL, "exG#0", 1, NOW, notify=notify, cancelled=never)
    assert notify.retry is not None  # B's retry found its slot: B calls its model now
    state = store.read(MODEL)
    assert set(state.leases) == {"exB#0"} and state.in_use == 1  # and keeps it: C still waits
    assert [t.holder for t in store.oldest(MODEL, 10)] == ["exC#0"]
    assert isinstance(store.take(MODEL, "newcomer#0", 1, NOW + 1800), type(state))  # no room for another


def test_a_fill_does_not_give_back_a_slot_whose_branch_found_it(store: SlotStore) -> None:
    semaphore = Semaphore(store)
    store.enqueue(MODEL, waiting_b())  # B waits; the slot is free (a release saw no ticket)
    notify = RetryAtTimeout(semaphore, "exB#0")
    semaphore.fill(MODEL, 1, NOW, notify=notify, cancelled=never)
    assert notify.retry is not None
    state = store.read(MODEL)
    assert set(state.leases) == {"exB#0"} and state.in_use == 1
    assert not isinstance(store.take(MODEL, "newcomer#0", 1, NOW + 1800), Taken)


def test_a_dead_branchs_slot_still_goes_on_when_nobody_found_it(store: SlotStore) -> None:
    """The same hand-over with no retry meanwhile (the execution was stopped): the slot goes on to C."""
    semaphore = Semaphore(store)
    assert isinstance(store.take(MODEL, "exG#0", 1, NOW + 1800), Taken)
    store.enqueue(MODEL, waiting_b())
    store.enqueue(MODEL, Ticket("exC#0", "tokenC", "2026-11-30T21:00:01.000Z#exC#0", NOW))
    woken: list[str] = []

    def notify(token: str, output: Mapping[str, Any]) -> bool:
        woken.append(token)
        return token != "token1"

    semaphore.release(MODEL, "exG#0", 1, NOW, notify=notify, cancelled=never)
    assert woken == ["token1", "tokenC"]
    assert set(store.read(MODEL).leases) == {"exC#0"}
