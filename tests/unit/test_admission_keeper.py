"""The admission keeper's round (``Semaphore.sweep``) on moto's DynamoDB: expired leases come back even
when nobody waits, tickets whose branch stopped waiting are dropped, and the ASL's wait agrees with the
staleness the keeper assumes."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from image_pipeline.core.admission import (
    STALE_TICKET_SECONDS,
    SWEEP_DROPS,
    SWEEP_RECLAIMS,
    WAIT_SECONDS,
    DynamoSlotStore,
    Semaphore,
    Ticket,
)
from moto import mock_aws

from imagegen.runtime.engine import ADMISSION_TABLE, ADMISSION_WAITERS_TABLE, create_admission_table
from imagegen.runtime.moto_atomic_writes import atomic_writes

MODEL = "stable-image-core"
ASL = Path(__file__).resolve().parents[2] / "statemachine" / "generate_images.asl.json"


@pytest.fixture
def semaphore(aws_credentials: None) -> Iterator[Semaphore]:
    with mock_aws(), atomic_writes():
        client = boto3.client("dynamodb", region_name="us-west-2")
        if ADMISSION_TABLE not in client.list_tables()["TableNames"]:
            create_admission_table(client)
        yield Semaphore(DynamoSlotStore(client, ADMISSION_TABLE, ADMISSION_WAITERS_TABLE))


class Wakes:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, token: str, output: Mapping[str, Any]) -> bool:
        self.sent.append((token, dict(output)))
        return True


def never(execution: str) -> bool:
    return False


def test_expired_leases_come_back_though_nobody_waits(semaphore: Semaphore) -> None:
    for i in range(SWEEP_RECLAIMS + 2):
        assert semaphore.try_take(MODEL, f"died-{i}#0", 100, 0.0) is not None  # leases expire at 1,800
    assert semaphore.try_take(MODEL, "alive#0", 100, 5_000.0) is not None  # its lease runs to 6,800
    semaphore.sweep(MODEL, 100, 2_000.0, notify=Wakes(), cancelled=never)
    state = semaphore.store.read(MODEL)
    assert state.in_use == len(state.leases) == 3  # ten reclaimed this round, two left for the next
    assert "alive#0" in state.leases
    semaphore.sweep(MODEL, 100, 2_060.0, notify=Wakes(), cancelled=never)
    assert set(semaphore.store.read(MODEL).leases) == {"alive#0"}


def test_tickets_whose_branch_stopped_waiting_are_dropped(semaphore: Semaphore) -> None:
    assert semaphore.try_take(MODEL, "holder#0", 1, 0.0) is not None
    for i in range(SWEEP_DROPS + 1):  # queued at 10 s, never renewed: their executions ended
        semaphore.store.enqueue(
            MODEL, Ticket(f"gone-{i}#0", f"t-gone-{i}", f"2026-11-30T00:00:{i:02d}#gone-{i}#0", 10.0)
        )
    live = Ticket("live#0", "t-live", "2026-11-30T01:00:00#live#0", 400.0)  # renewed at 400 s
    semaphore.store.enqueue(MODEL, live)
    now = 10.0 + STALE_TICKET_SECONDS + 1
    wakes = Wakes()
    semaphore.sweep(MODEL, 1, now, notify=wakes, cancelled=never)
    left = semaphore.store.oldest(MODEL, 100)
    assert [t.holder for t in left] == [f"gone-{SWEEP_DROPS}#0", "live#0"]  # the round's most, then the next
    assert semaphore.report.stale == SWEEP_DROPS and wakes.sent == []  # nobody woken: the slot is held
    semaphore.sweep(MODEL, 1, now + 60, notify=wakes, cancelled=never)
    assert [t.holder for t in semaphore.store.oldest(MODEL, 100)] == ["live#0"]
    assert semaphore.store.waiting(MODEL) == 1


def test_a_ticket_renewed_within_its_wait_is_never_stale() -> None:
    state = json.loads(ASL.read_text())["States"]["GenerateImages"]["ItemProcessor"]["States"]["AcquireSlot"]
    assert state["TimeoutSeconds"] == WAIT_SECONDS
    timeout_retry = next(r for r in state["Retry"] if r["ErrorEquals"] == ["States.Timeout"])
    # the retry after a timed-out wait comes within its first interval (full jitter): well inside the margin
    assert WAIT_SECONDS + timeout_retry["IntervalSeconds"] < STALE_TICKET_SECONDS


def test_the_waiting_counter_is_recounted_each_round(semaphore: Semaphore) -> None:
    """An answer lost beside a claim or an enqueue leaves the counter wrong (its ADD is not idempotent):
    the round sets it to the tickets there are, so the metric and the synchronous routes' estimate heal."""
    assert semaphore.try_take(MODEL, "holder#0", 1, 0.0) is not None
    for i in range(2):
        semaphore.store.enqueue(MODEL, Ticket(f"w-{i}#0", f"t-{i}", f"2026-11-30T00:00:0{i}#w-{i}#0", 100.0))
    store = semaphore.store
    assert isinstance(store, DynamoSlotStore)
    store._count_waiting(MODEL, +5)  # drifted: five answers lost
    assert store.waiting(MODEL) == 7
    semaphore.sweep(MODEL, 1, 120.0, notify=Wakes(), cancelled=never)
    assert store.waiting(MODEL) == 2


def test_an_ended_execution_gives_its_slots_to_the_queue_at_once(semaphore: Semaphore) -> None:
    """A job stopped while two of its branches held slots and one waited: its leases (still valid for
    half an hour) are given back and handed to the next job's waiting branch, its own ticket dropped;
    another job's slot and tickets are untouched."""
    store = semaphore.store
    for holder in ("stopped#0", "stopped#1", "other#0"):
        assert semaphore.try_take(MODEL, holder, 3, 0.0) is not None
    store.enqueue(MODEL, Ticket("stopped#2", "t-stopped-2", "2026-11-30T00:00:00#stopped#2", 10.0))
    store.enqueue(MODEL, Ticket("next#0", "t-next", "2026-11-30T00:00:05#next#0", 10.0))
    store.enqueue(MODEL, Ticket("next#1", "t-next-1", "2026-11-30T00:00:05#next#1", 10.0))
    wakes = Wakes()
    freed = semaphore.forget(MODEL, "stopped", 3, 20.0, notify=wakes, cancelled=never)
    assert freed == 2
    assert [token for token, _ in wakes.sent] == ["t-next", "t-next-1"]  # the stopped job's ticket: dropped
    state = store.read(MODEL)
    assert set(state.leases) == {"other#0", "next#0", "next#1"} and state.in_use == 3
    assert store.oldest(MODEL, 10) == []
    assert semaphore.forget(MODEL, "stopped", 3, 21.0, notify=wakes, cancelled=never) == 0  # idempotent
