"""The calls admission control makes in its worst cases, counted on moto's DynamoDB, against the counts
``core/time_budget.py`` budgets the Admission function and GenerateImage with: a budget that counts fewer
calls than the code makes fails here (the functions' timeouts are computed from those counts)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
from image_pipeline.core import time_budget
from image_pipeline.core.admission import (
    EARLY_HAND_OFF_TICKETS,
    HAND_OFF_TICKETS,
    RECLAIMS_PER_STEP,
    SWEEP_LOOKUPS,
    SWEEP_WAKES,
    DynamoSlotStore,
    Semaphore,
    Ticket,
)
from moto import mock_aws

from imagegen.runtime.engine import ADMISSION_TABLE, ADMISSION_WAITERS_TABLE, create_admission_table
from imagegen.runtime.moto_atomic_writes import atomic_writes

MODEL = "stable-image-core"


class Counting:
    """A DynamoDB client that counts the API calls made through it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if not callable(method) or name.startswith("_") or name in {"meta", "exceptions"}:
            return method

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return method(*args, **kwargs)

        return counted


class Calls:
    """``notify`` and ``cancelled`` that count their calls; ``dead`` tokens no longer wait."""

    def __init__(self, *, dead: bool = False, cancelled: bool = False) -> None:
        self.dead, self.stopped = dead, cancelled
        self.wakes = 0
        self.lookups = 0

    def notify(self, token: str, output: Mapping[str, Any]) -> bool:
        self.wakes += 1
        return not self.dead

    def cancelled(self, execution: str) -> bool:
        self.lookups += 1
        return self.stopped


@pytest.fixture
def counting(aws_credentials: None) -> Iterator[Counting]:
    with mock_aws(), atomic_writes():
        client = boto3.client("dynamodb", region_name="us-west-2")
        if ADMISSION_TABLE not in client.list_tables()["TableNames"]:
            create_admission_table(client)
        yield Counting(client)


def semaphore(client: Counting) -> Semaphore:
    return Semaphore(DynamoSlotStore(client, ADMISSION_TABLE, ADMISSION_WAITERS_TABLE))


def queue(sem: Semaphore, count: int, *, job: str = "waiting") -> None:
    for i in range(count):
        sem.store.enqueue(
            MODEL, Ticket(f"{job}-{i}#0", f"token-{job}-{i}", f"2026-11-30T00:00:{i:02d}#{job}-{i}#0", 0.0)
        )


def budgeted_seconds(calls: int, wakes: int) -> float:
    return (
        calls * time_budget.ADMISSION_DYNAMODB.worst_case_seconds
        + wakes * time_budget.ADMISSION_NOTIFY.worst_case_seconds
    )


def test_a_release_whose_waiting_branches_have_all_gone(counting: Counting) -> None:
    """The release's worst case: every ticket's branch has gone (each one claimed, looked up, handed the
    slot, woken in vain), then the fill's rounds hand free slots to more dead branches."""
    sem = semaphore(counting)
    assert sem.try_take(MODEL, "giver#0", 1, 0.0) is not None
    queue(sem, 4 * HAND_OFF_TICKETS)
    calls = Calls(dead=True)
    counting.calls = 0
    sem.release(MODEL, "giver#0", 1, 1.0, notify=calls.notify, cancelled=calls.cancelled)
    spent = budgeted_seconds(counting.calls + calls.lookups, calls.wakes)
    assert calls.wakes >= HAND_OFF_TICKETS  # the worst case was reached: every ticket looked at was dead
    assert spent <= time_budget.admission_hand_off_bound(fill=True)


def test_generate_images_early_hand_off_to_a_dead_branch(counting: Counting) -> None:
    sem = semaphore(counting)
    assert sem.try_take(MODEL, "giver#0", 1, 0.0) is not None
    queue(sem, 3)
    calls = Calls(dead=True)
    counting.calls = 0
    sem.release(
        MODEL,
        "giver#0",
        1,
        1.0,
        notify=calls.notify,
        cancelled=calls.cancelled,
        fill=False,
        tickets=EARLY_HAND_OFF_TICKETS,
    )
    assert calls.wakes == EARLY_HAND_OFF_TICKETS
    spent = budgeted_seconds(counting.calls + calls.lookups, calls.wakes)
    assert spent <= time_budget.admission_hand_off_bound(fill=False, tickets=EARLY_HAND_OFF_TICKETS)


def test_an_acquire_that_reclaims_and_queues(counting: Counting) -> None:
    """Every slot's lease has expired but the takes keep losing the freed slots (the limit is reached again
    by the reclaims' own count), then the branch queues and the fill meets dead branches."""
    sem = semaphore(counting)
    limit = RECLAIMS_PER_STEP + 2
    for i in range(limit):
        assert sem.try_take(MODEL, f"dead-{i}#0", limit, -10_000.0) is not None  # leases long expired
    queue(sem, 2 * HAND_OFF_TICKETS)
    calls = Calls(dead=True)
    counting.calls = 0
    mine = Ticket("mine#0", "token-mine", "2026-11-30T23:59:59#mine#0", 1.0)
    sem.acquire(MODEL, mine, limit, 1.0, notify=calls.notify, cancelled=calls.cancelled)
    spent = budgeted_seconds(counting.calls + calls.lookups, calls.wakes)
    assert spent <= time_budget.admission_acquire_bound()


def test_a_keeper_round_over_cancelled_jobs(counting: Counting) -> None:
    sem = semaphore(counting)
    assert sem.try_take(MODEL, "holder#0", 1, 0.0) is not None
    for job in range(3 * SWEEP_LOOKUPS):
        queue(sem, 2, job=f"job{job:02d}")
    calls = Calls(cancelled=True)
    counting.calls = 0
    sem.sweep(MODEL, 1, 1.0, notify=calls.notify, cancelled=calls.cancelled)
    assert calls.lookups <= SWEEP_LOOKUPS + HAND_OFF_TICKETS and calls.wakes <= SWEEP_WAKES + HAND_OFF_TICKETS
    assert sem.report.cancelled >= SWEEP_WAKES  # the round did its most
    spent = (
        budgeted_seconds(counting.calls + calls.lookups, calls.wakes)
        + 2 * time_budget.ADMISSION_DYNAMODB.worst_case_seconds
    )
    assert spent <= time_budget.admission_sweep_bound()
