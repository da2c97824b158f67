"""Admission control's semaphore and queue (core/admission.py) on moto's DynamoDB (the two tables the
stack deploys), under faults: the queue served oldest first, hand-overs that keep the count, releases
that count once, lost write acknowledgements, dead and failing wake-ups, the lost wake-up race, cancelled
jobs, a branch that waits again, throttling, and many branches at once; and the refusal of bad quotas.

``notify`` is a recording fake of SendTaskSuccess (``Wakes``): which token was sent what, and whether
its branch still waited."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from image_pipeline.core.admission import (
    DEFAULT_LEASE_SECONDS,
    DynamoSlotStore,
    Granted,
    HandOver,
    InvalidQuota,
    NoSlot,
    Semaphore,
    SlotState,
    Ticket,
    decide,
    default_quota,
    holder_id,
    parse_quotas,
    quota_of,
    release_after_call,
    ticket_place,
)
from image_pipeline.core.settings import Settings
from moto import mock_aws

from imagegen.runtime.engine import (
    ADMISSION_TABLE,
    ADMISSION_WAITERS_TABLE,
    EngineConfig,
    create_admission_table,
)
from imagegen.runtime.moto_atomic_writes import atomic_writes

MODEL = "stable-image-core"


@pytest.fixture
def dynamodb(aws_credentials: None) -> Iterator[Any]:
    # DynamoDB applies a conditional write atomically; moto needs the engine's lock for that.
    with mock_aws(), atomic_writes():
        client = boto3.client("dynamodb", region_name="us-west-2")
        create_admission_table(client)
        yield client


def store_of(client: Any) -> DynamoSlotStore:
    return DynamoSlotStore(client, ADMISSION_TABLE, ADMISSION_WAITERS_TABLE)


class Wakes:
    """A recording SendTaskSuccess: every token sent and its output; ``dead`` tokens no longer wait
    (False), ``failing`` ones raise (Step Functions throttling, say)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.dead: set[str] = set()
        self.failing: dict[str, Exception] = {}

    def __call__(self, token: str, output: Mapping[str, Any]) -> bool:
        if token in self.failing:
            raise self.failing[token]
        self.sent.append((token, dict(output)))
        return token not in self.dead

    def granted(self) -> list[str]:
        """Tokens of live branches woken with a slot, in order."""
        return [t for t, o in self.sent if o["admission"] == "granted" and t not in self.dead]

    def cancelled(self) -> list[str]:
        return [t for t, o in self.sent if o["admission"] == "cancelled"]


class Jobs:
    """``cancelled(execution)``: the jobs in ``stopped`` were cancelled; every look is recorded."""

    def __init__(self, *stopped: str) -> None:
        self.stopped = set(stopped)
        self.looked: list[str] = []

    def __call__(self, execution: str) -> bool:
        self.looked.append(execution)
        return execution in self.stopped


def ticket(holder: str, *, second: int = 0, token: str | None = None, since: float = 0.0) -> Ticket:
    """The ticket of ``holder``'s branch, of a job started at 10:00:<second>: older jobs first."""
    start = f"2026-11-30T10:00:{second:02d}.000Z"
    return Ticket(holder, token or f"token-{holder}", ticket_place(start, holder, since), since)


class Branches:
    """Branches of one model going through one semaphore, as the Admission handler drives it."""

    def __init__(self, store: Any, limit: int, **semaphore: Any) -> None:
        self.store = store
        self.limit = limit
        self.semaphore = Semaphore(store, **semaphore)
        self.wakes = Wakes()
        self.jobs = Jobs()

    def acquire(self, holder: str, now: float = 0.0, **kwargs: Any) -> Granted | None:
        return self.semaphore.acquire(
            MODEL,
            ticket(holder, since=now, **kwargs),
            self.limit,
            now,
            notify=self.wakes,
            cancelled=self.jobs,
        )

    def release(self, holder: str, now: float = 0.0, **kwargs: Any) -> bool:
        return self.semaphore.release(
            MODEL, holder, self.limit, now, notify=self.wakes, cancelled=self.jobs, **kwargs
        )

    def fill(self, now: float = 0.0) -> None:
        self.semaphore.fill(MODEL, self.limit, now, notify=self.wakes, cancelled=self.jobs)

    def sweep(self, now: float = 0.0) -> None:
        self.semaphore.sweep(MODEL, self.limit, now, notify=self.wakes, cancelled=self.jobs)

    def state(self) -> SlotState:
        state = self.store.read(MODEL)
        assert state.in_use == len(state.leases) <= self.limit, state  # never over, never leaked
        return state

    def holders(self) -> set[str]:
        return set(self.state().leases)

    def queue(self) -> list[str]:
        return [t.holder for t in self.store.oldest(MODEL, 100)]


def error(code: str, operation: str, status: int = 400) -> ClientError:
    """An AWS error answer as botocore raises it (its code and HTTP status)."""
    response: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation)


class LostAcknowledgement:
    """A client whose next write of a kind in ``lose`` (operation, table) is applied by DynamoDB but
    answered with an error (the connection dropped after the write)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.lose: set[tuple[str, str]] = set()

    def __getattr__(self, name: str) -> Any:
        operation = getattr(self.client, name)
        if name not in ("update_item", "delete_item", "put_item"):
            return operation

        def call(**kwargs: Any) -> Any:
            answer = operation(**kwargs)
            if (name, kwargs["TableName"]) in self.lose:
                self.lose.discard((name, kwargs["TableName"]))
                raise error("InternalServerError", name)
            return answer

        return call


SLOT_WRITE = ("update_item", ADMISSION_TABLE)
CLAIM = ("delete_item", ADMISSION_WAITERS_TABLE)


class Throttling:
    """A client whose writes in ``throttled`` DynamoDB throttles (nothing written)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.throttled: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        if name in self.throttled:

            def refused(**_: Any) -> Any:
                raise error("ProvisionedThroughputExceededException", name)

            return refused
        return getattr(self.client, name)


# -- taking and queueing --------------------------------------------------------------------------


def test_takes_up_to_the_limit_then_queues_oldest_job_first(dynamodb: Any) -> None:
    branches = Branches(store_of(dynamodb), limit=2)
    assert [branches.acquire(h).in_use for h in ("a#0", "b#0")] == [1, 2]  # type: ignore[union-attr]
    # queued in arrival order z, y, x, but x's job started first: the queue is ordered by place
    assert branches.acquire("z#0", 1.0, second=30) is None
    assert branches.acquire("y#0", 2.0, second=20) is None
    assert branches.acquire("x#0", 3.0, second=10) is None
    assert branches.wakes.sent == []  # nobody woken: the queued branches wait on their tokens
    assert branches.queue() == ["x#0", "y#0", "z#0"] and branches.store.waiting(MODEL) == 3
    assert branches.holders() == {"a#0", "b#0"}

    assert branches.release("a#0", 10.0) is True
    assert branches.wakes.granted() == ["token-x#0"]
    assert branches.wakes.sent[0][1] == {"holder": "x#0", "admission": "granted", "waited_seconds": 7.0}
    state = branches.state()  # handed over: the count never moved, the slot was never free
    assert state.in_use == 2 and set(state.leases) == {"b#0", "x#0"}
    assert state.leases["x#0"] == 10.0 + DEFAULT_LEASE_SECONDS
    assert branches.release("b#0", 11.0) and branches.release("x#0", 12.0)
    assert branches.wakes.granted() == ["token-x#0", "token-y#0", "token-z#0"]
    assert branches.holders() == {"y#0", "z#0"} and branches.queue() == []
    assert branches.store.waiting(MODEL) == 0
    assert branches.semaphore.report.waited_seconds == [7.0, 9.0, 11.0]


def test_a_newcomer_cannot_take_a_slot_handed_to_a_waiting_branch(dynamodb: Any) -> None:
    branches = Branches(store_of(dynamodb), limit=1)
    branches.acquire("a#0")
    assert branches.acquire("w#0", 1.0) is None
    branches.release("a#0", 2.0)
    assert branches.acquire("late#0", 3.0) is None  # the slot went to w, not back to the pool
    assert branches.holders() == {"w#0"} and branches.queue() == ["late#0"]


def test_a_release_with_no_ticket_gives_back_and_a_second_release_changes_nothing(dynamodb: Any) -> None:
    branches = Branches(store_of(dynamodb), limit=2)
    branches.acquire("a#0")
    branches.acquire("b#0")
    assert branches.release("a#0") is True
    assert branches.state() == SlotState(1, {"b#0": DEFAULT_LEASE_SECONDS})
    assert branches.release("a#0") is False  # ReleaseSlot after GenerateImage's early release
    assert branches.release("a#0") is False
    assert branches.state() == SlotState(1, {"b#0": DEFAULT_LEASE_SECONDS})
    assert branches.wakes.sent == []


def test_a_release_by_a_holder_without_a_slot_only_fills(dynamodb: Any) -> None:
    store = store_of(dynamodb)
    branches = Branches(store, limit=1)
    branches.acquire("a#0")
    branches.release("a#0")
    # a branch whose Admission call died between its enqueue and its fill: a ticket, a free slot
    store.enqueue(MODEL, ticket("w#0"))
    assert branches.release("nobody#0", 5.0) is False
    assert branches.wakes.granted() == ["token-w#0"] and branches.holders() == {"w#0"}
    assert branches.release("nobody#0", 6.0) is False  # full now: nothing given back, nothing taken
    assert branches.holders() == {"w#0"} and branches.state().in_use == 1


def test_a_dead_holders_slot_comes_back_when_its_lease_expires(dynamodb: Any) -> None:
    branches = Branches(store_of(dynamodb), limit=1, lease_seconds=300)
    branches.acquire("killed#0", 0.0)  # its branch dies: it never releases
    assert branches.acquire("next#0", 299.0) is None
    assert branches.acquire("other#0", 301.0) is not None  # a take reclaims the expired lease
    assert branches.holders() == {"other#0"}
    assert branches.release("killed#0", 302.0) is False  # a late release of the dead one: nothing
    assert branches.state().in_use == 1


# -- lost acknowledgements ------------------------------------------------------------------------


def test_a_take_whose_acknowledgement_was_lost_is_counted_once(dynamodb: Any) -> None:
    lossy = LostAcknowledgement(dynamodb)
    branches = Branches(store_of(lossy), limit=2)
    lossy.lose.add(SLOT_WRITE)
    with pytest.raises(ClientError):
        branches.acquire("a#0", 10.0)  # written, but the branch saw an error
    assert branches.state().in_use == 1
    again = branches.acquire("a#0", 11.0)  # the state machine's retry of the take
    assert again == Granted("a#0", None, 0)  # held already: not counted again
    assert branches.holders() == {"a#0"} and branches.state().in_use == 1
    assert branches.acquire("b#0", 12.0) is not None
    assert branches.acquire("c#0", 12.0) is None  # 2 slots, 2 holders: the lost one counted once


def test_a_release_retried_after_a_lost_acknowledgement_is_counted_once(dynamodb: Any) -> None:
    lossy = LostAcknowledgement(dynamodb)
    branches = Branches(store_of(lossy), limit=2)
    branches.acquire("a#0")
    branches.acquire("b#0")
    lossy.lose.add(SLOT_WRITE)
    with pytest.raises(ClientError):
        branches.release("a#0")  # given back; the answer lost
    assert branches.release("a#0") is False  # retried, and again
    assert branches.release("a#0") is False
    assert branches.state() == SlotState(1, {"b#0": DEFAULT_LEASE_SECONDS})


class Recording:
    """A store that records every hand-over asked of it."""

    def __init__(self, store: DynamoSlotStore) -> None:
        self.store = store
        self.hand_overs: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def hand_over(
        self, model: str, giver: str, taker: str, expires: float, giver_expiry: float | None = None
    ) -> HandOver:
        self.hand_overs.append((giver, taker))
        return self.store.hand_over(model, giver, taker, expires, giver_expiry)


def test_a_hand_over_whose_acknowledgement_was_lost(dynamodb: Any) -> None:
    """The hand-over is written but the release sees an error: the ticket goes back, the release
    fails (retried by the state machine), the count never moves. The woken-never branch times out,
    waits again with a new token, finds its slot (``held``); its old ticket, still queued, is dropped
    when it comes up, even in its own holder's release (never a hand-over from a holder to itself,
    which DynamoDB refuses: two paths of one update expression may not overlap)."""
    lossy = LostAcknowledgement(dynamodb)
    store = Recording(store_of(lossy))
    branches = Branches(store, limit=2)
    branches.acquire("a#0")
    branches.acquire("b#0")
    assert branches.acquire("x#0", 1.0, second=1, token="x-first") is None
    assert branches.acquire("y#0", 2.0, second=2) is None
    lossy.lose.add(SLOT_WRITE)
    with pytest.raises(ClientError):
        branches.release("a#0", 3.0)
    assert branches.holders() == {"b#0", "x#0"} and branches.state().in_use == 2
    assert branches.queue() == ["x#0", "y#0"] and branches.wakes.sent == []
    assert branches.release("a#0", 4.0) is False  # ReleaseSlot's retry: a holds nothing now
    assert branches.holders() == {"b#0", "x#0"} and branches.wakes.sent == []

    # x's AcquireSlot times out (States.Timeout) and is retried with a new token: its slot is there
    branches.wakes.dead.add("x-first")
    assert branches.acquire("x#0", 300.0, second=1, token="x-second") == Granted("x#0", None, 0)
    assert branches.state().in_use == 2
    assert branches.release("x#0", 310.0) is True  # its old ticket comes up first: dropped
    assert ("x#0", "x#0") not in store.hand_overs
    assert branches.holders() == {"b#0", "y#0"} and branches.queue() == []
    assert branches.wakes.granted() == ["token-y#0"]


def test_a_fill_never_gives_back_a_slot_it_did_not_hand(dynamodb: Any) -> None:
    """A holder with a stale ticket (a lost hand-over acknowledgement, then a wait that timed out and
    found its slot ``held``) keeps its slot when a fill comes to the old ticket and its dead token:
    the fill gives back only a lease it took, or the model would have one call too many in flight."""
    lossy = LostAcknowledgement(dynamodb)
    branches = Branches(store_of(lossy), limit=2, lease_seconds=100)
    branches.acquire("a#0", 0.0)
    branches.acquire("dies#0", 0.0)
    assert branches.acquire("x#0", 1.0, second=1, token="x-first") is None
    lossy.lose.add(SLOT_WRITE)
    with pytest.raises(ClientError):
        branches.release("a#0", 50.0)  # a -> x written (x's lease to 150), acknowledgement lost
    branches.wakes.dead.add("x-first")
    assert branches.acquire("x#0", 60.0, second=1, token="x-second") == Granted("x#0", None, 0)
    # dies#0's branch died with its slot; the keeper's round reclaims it and serves the queue
    branches.sweep(120.0)
    assert "x#0" in branches.holders()  # x is calling its model: its slot stays its own
    assert branches.queue() == []
    assert branches.acquire("c#0", 121.0) is not None
    assert branches.acquire("d#0", 122.0) is None  # two calls in flight, not three
    assert branches.holders() == {"x#0", "c#0"}


def test_a_claim_whose_acknowledgement_was_lost(dynamodb: Any) -> None:
    """The ticket is deleted, the release sees an error: nothing was handed (the giver keeps its
    slot until the retry), and the branch whose ticket went is served when it waits again."""
    lossy = LostAcknowledgement(dynamodb)
    branches = Branches(store_of(lossy), limit=1)
    branches.acquire("a#0")
    assert branches.acquire("w#0", 1.0, token="w-first") is None
    lossy.lose.add(CLAIM)
    with pytest.raises(ClientError):
        branches.release("a#0", 2.0)
    assert branches.holders() == {"a#0"} and branches.queue() == []
    assert branches.release("a#0", 3.0) is True  # ReleaseSlot's retry: no ticket, given back
    assert branches.state().in_use == 0
    branches.wakes.dead.add("w-first")  # w's wait times out; it asks again and gets the free slot
    assert branches.acquire("w#0", 300.0, token="w-second") == Granted("w#0", 1, 0)
    assert branches.wakes.sent == []


# -- wake-ups that fail ---------------------------------------------------------------------------


def test_a_dead_token_passes_the_slot_on_to_the_next_ticket(dynamodb: Any) -> None:
    branches = Branches(store_of(dynamodb), limit=1)
    branches.acquire("a#0")
    for second, holder in enumerate(("stopped#0", "timedout#0", "live#0")):
        branches.acquire(holder, 1.0, second=second)
    branches.wakes.dead |= {"token-stopped#0", "token-timedout#0"}
    assert branches.release("a#0", 2.0) is True
    assert [t for t, _ in branches.wakes.sent] == ["token-stopped#0", "token-timedout#0", "token-live#0"]
    assert branches.holders() == {"live#0"} and branches.state().in_use == 1
    assert branches.queue() == [] and branches.semaphore.report.stale == 2


def test_when_every_token_is_dead_the_slot_is_given_back(dynamodb: Any) -> None:
    branches = Branches(store_of(dynamodb), limit=1)
    branches.acquire("a#0")
    for second, holder in enumerate(("gone#0", "gone#1")):
        branches.acquire(holder, 1.0, second=second)
    branches.wakes.dead |= {"token-gone#0", "token-gone#1"}
    branches.release("a#0", 2.0)
    assert branches.state() == SlotState(0, {}) and branches.queue() == []
    assert branches.wakes.granted() == []


def test_a_fill_whose_branch_has_gone_gives_the_slot_back(dynamodb: Any) -> None:
    store = store_of(dynamodb)
    branches = Branches(store, limit=1)
    store.enqueue(MODEL, ticket("gone#0", second=1))
    store.enqueue(MODEL, ticket("live#0", second=2))
    branches.wakes.dead.add("token-gone#0")
    branches.fill(5.0)
    assert branches.holders() == {"live#0"} and branches.queue() == []


def test_a_failing_wake_up_undoes_the_hand_over_and_raises(dynamodb: Any) -> None:
    branches = Branches(store_of(dynamodb), limit=1)
    branches.acquire("a#0")
    branches.acquire("w#0", 1.0)
    branches.wakes.failing["token-w#0"] = error("ThrottlingException", "SendTaskSuccess")
    with pytest.raises(ClientError, match="ThrottlingException"):
        branches.release("a#0", 2.0)
    # nothing half done: the slot is free, the ticket waits again, nobody was counted twice
    assert branches.state() == SlotState(0, {}) and branches.queue() == ["w#0"]
    del branches.wakes.failing["token-w#0"]
    assert branches.release("a#0", 3.0) is False  # ReleaseSlot's retry: its fill serves w
    assert branches.holders() == {"w#0"} and branches.wakes.granted() == ["token-w#0"]


def test_a_failing_wake_up_in_a_fill_undoes_the_take(dynamodb: Any) -> None:
    store = store_of(dynamodb)
    branches = Branches(store, limit=1)
    store.enqueue(MODEL, ticket("w#0"))
    branches.wakes.failing["token-w#0"] = error("ThrottlingException", "SendTaskSuccess")
    with pytest.raises(ClientError):
        branches.fill(1.0)
    assert branches.state() == SlotState(0, {}) and branches.queue() == ["w#0"]


class LostWakeUp(Wakes):
    """A SendTaskSuccess that reaches Step Functions (the branch wakes) but whose answer is lost: an
    internal error (HTTP 500) or a timeout, the branch woken all the same."""

    def __init__(self, lost: Exception) -> None:
        super().__init__()
        self.lost = lost

    def __call__(self, token: str, output: Mapping[str, Any]) -> bool:
        super().__call__(token, output)
        raise self.lost


@pytest.mark.parametrize("lost", [error("InternalFailure", "SendTaskSuccess", 500), TimeoutError("read")])
def test_a_wake_up_whose_answer_was_lost_keeps_the_hand_over(dynamodb: Any, lost: Exception) -> None:
    """The branch may have been woken and be calling its model: its slot stays its own (undoing the
    hand-over would let a newcomer take it: a call too many). Not woken, its wait times out and its
    AcquireSlot, asked again, finds the slot ``held``."""
    branches = Branches(store_of(dynamodb), limit=1)
    branches.acquire("a#0")
    branches.acquire("w#0", 1.0)
    branches.wakes = LostWakeUp(lost)
    with pytest.raises(type(lost)):
        branches.release("a#0", 2.0)
    assert branches.wakes.sent[0][0] == "token-w#0"
    assert branches.holders() == {"w#0"} and branches.queue() == []
    branches.wakes = Wakes()
    assert branches.release("a#0", 3.0) is False  # ReleaseSlot's retry: nothing more to do
    assert branches.acquire("late#0", 4.0) is None  # one call in flight, not two
    assert branches.acquire("w#0", 300.0, token="w-again") == Granted("w#0", None, 0)
    assert branches.wakes.sent == []


def test_a_fills_wake_up_whose_answer_was_lost_keeps_the_slot(dynamodb: Any) -> None:
    store = store_of(dynamodb)
    branches = Branches(store, limit=1)
    store.enqueue(MODEL, ticket("w#0"))
    branches.wakes = LostWakeUp(error("ServiceUnavailable", "SendTaskSuccess", 503))
    with pytest.raises(ClientError):
        branches.fill(1.0)
    assert branches.holders() == {"w#0"} and branches.queue() == []


# -- the lost wake-up race ------------------------------------------------------------------------


class Interleaving:
    """A store that runs ``hook`` once, right before (or after) a chosen step, to order two requests'
    steps deterministically."""

    def __init__(self, store: DynamoSlotStore, step: str, hook: Callable[[], object], *, after: bool) -> None:
        self.store = store
        self.step = step
        self.hook: Callable[[], object] | None = hook
        self.after = after

    def __getattr__(self, name: str) -> Any:
        operation = getattr(self.store, name)
        if name != self.step:
            return operation

        def call(*args: Any) -> Any:
            hook, self.hook = self.hook, None
            if hook and not self.after:
                hook()
            answer = operation(*args)
            if hook and self.after:
                hook()
            return answer

        return call


def test_a_ticket_enqueued_after_a_release_saw_an_empty_queue_is_served(dynamodb: Any) -> None:
    """The waiting branch found no slot; the holder's release then saw no ticket and gave back; the
    ticket appears after: the fill that follows its enqueue serves it."""
    store = store_of(dynamodb)
    holders = Branches(store, limit=1)
    holders.acquire("a#0")
    # w's acquire: its take fails, then (before its enqueue) a's release runs in full
    waiting = Branches(Interleaving(store, "enqueue", lambda: holders.release("a#0", 1.0), after=False), 1)
    waiting.wakes = holders.wakes
    assert waiting.acquire("w#0", 1.0) is None
    assert holders.wakes.granted() == ["token-w#0"]
    assert holders.holders() == {"w#0"} and holders.queue() == []


def test_a_release_that_saw_an_empty_queue_fills_after_it_gives_back(dynamodb: Any) -> None:
    """The other order: the release read an empty queue; the waiting branch then enqueued and its fill
    found the model full; the release's give-back and fill come after, and see the ticket."""
    store = store_of(dynamodb)
    waiting = Branches(store, limit=1)
    waiting.acquire("a#0")
    releasing = Branches(
        Interleaving(store, "oldest", lambda: waiting.acquire("w#0", 1.0), after=True), limit=1
    )
    releasing.wakes = waiting.wakes
    assert releasing.release("a#0", 1.0) is True
    assert releasing.wakes.granted() == ["token-w#0"]
    assert waiting.holders() == {"w#0"} and waiting.queue() == []


# -- cancelled jobs -------------------------------------------------------------------------------


def test_a_cancelled_jobs_branch_without_a_slot_is_answered_cancelled(dynamodb: Any) -> None:
    branches = Branches(store_of(dynamodb), limit=1)
    branches.jobs.stopped.add("job")
    assert branches.acquire("job#0") is not None  # a slot free: taken, the job not even looked at
    assert branches.jobs.looked == []
    branches.release("job#0")
    branches.acquire("other#0")
    assert branches.acquire("job#1", 1.0) is None
    assert branches.jobs.looked == ["job"]
    assert branches.wakes.sent == [("token-job#1", {"holder": "job#1", "admission": "cancelled"})]
    assert branches.queue() == [] and branches.holders() == {"other#0"}
    assert branches.semaphore.report.cancelled == 1


def test_a_hand_off_wakes_a_cancelled_ticket_and_skips_it(dynamodb: Any) -> None:
    branches = Branches(store_of(dynamodb), limit=1)
    branches.acquire("a#0")
    branches.acquire("stopped#0", 1.0, second=1)
    branches.acquire("next#0", 1.0, second=2)
    branches.jobs.stopped.add("stopped")  # cancelled while it waited
    branches.release("a#0", 2.0)
    assert branches.wakes.cancelled() == ["token-stopped#0"]
    assert branches.wakes.granted() == ["token-next#0"]
    assert branches.holders() == {"next#0"} and branches.queue() == []


def test_a_fill_wakes_a_cancelled_ticket_and_serves_the_next(dynamodb: Any) -> None:
    store = store_of(dynamodb)
    branches = Branches(store, limit=1)
    store.enqueue(MODEL, ticket("stopped#0", second=1))
    store.enqueue(MODEL, ticket("next#0", second=2))
    branches.jobs.stopped.add("stopped")
    branches.fill(1.0)
    assert branches.wakes.cancelled() == ["token-stopped#0"]
    assert branches.holders() == {"next#0"} and branches.queue() == []


def test_the_keepers_sweep_wakes_cancelled_tickets_and_reclaims_expired_leases(dynamodb: Any) -> None:
    branches = Branches(store_of(dynamodb), limit=1, lease_seconds=100)
    branches.acquire("dies#0", 0.0)  # dies holding its slot: no release will come
    for second, holder in enumerate(("w#0", "stopped#0", "stopped#1", "v#0")):
        branches.acquire(holder, 1.0, second=second)
    branches.jobs.stopped.add("stopped")
    branches.jobs.looked.clear()
    branches.sweep(50.0)  # the lease is still good: only the cancelled job's tickets are woken
    assert branches.wakes.cancelled() == ["token-stopped#0", "token-stopped#1"]
    assert branches.holders() == {"dies#0"} and branches.queue() == ["w#0", "v#0"]
    assert branches.jobs.looked.count("stopped") == 1  # once per job, not per ticket
    branches.sweep(101.0)  # expired: reclaimed and handed to the oldest ticket
    assert branches.holders() == {"w#0"} and branches.queue() == ["v#0"]
    assert branches.wakes.granted() == ["token-w#0"]


# -- waiting again --------------------------------------------------------------------------------


def test_a_branch_waiting_again_keeps_its_place_with_its_new_token(dynamodb: Any) -> None:
    store = store_of(dynamodb)
    branches = Branches(store, limit=1)
    branches.acquire("a#0")
    assert branches.acquire("first#0", 1.0, second=1, token="old") is None
    assert branches.acquire("second#0", 2.0, second=2) is None
    old = store.oldest(MODEL, 1)[0]
    # first#0's wait timed out (States.Timeout): AcquireSlot asks again with a new token
    assert branches.acquire("first#0", 300.0, second=1, token="new") is None
    assert branches.queue() == ["first#0", "second#0"] and store.waiting(MODEL) == 2
    assert store.claim(MODEL, old) is False  # the old token can no longer claim the place
    branches.release("a#0", 301.0)
    assert branches.wakes.granted() == ["new"]
    assert branches.holders() == {"first#0"}


# -- throttling -----------------------------------------------------------------------------------


def test_a_throttled_take_is_no_slot_and_writes_nothing(dynamodb: Any) -> None:
    throttling = Throttling(dynamodb)
    branches = Branches(store_of(throttling), limit=2)
    branches.acquire("a#0")
    throttling.throttled.add("update_item")
    with pytest.raises(NoSlot, match="throttling"):  # the state machine asks again after a backoff
        branches.acquire("b#0", 1.0)
    assert branches.state().in_use == 1 and branches.queue() == []
    throttling.throttled.clear()
    assert branches.acquire("b#0", 2.0) == Granted("b#0", 2, 0)


def test_a_throttled_enqueue_is_no_slot(dynamodb: Any) -> None:
    throttling = Throttling(dynamodb)
    branches = Branches(store_of(throttling), limit=1)
    branches.acquire("a#0")
    throttling.throttled.add("put_item")
    with pytest.raises(NoSlot):
        branches.acquire("b#0", 1.0)
    throttling.throttled.clear()
    assert branches.queue() == [] and branches.acquire("b#0", 2.0) is None
    assert branches.queue() == ["b#0"]


# -- GenerateImage's release right after the call -------------------------------------------------


def test_the_release_after_the_call_hands_on_once_and_never_raises(dynamodb: Any) -> None:
    lossy = LostAcknowledgement(dynamodb)
    branches = Branches(store_of(lossy), limit=2)
    errors: list[Exception] = []
    branches.acquire("a#0")
    branches.acquire("b#0")
    branches.acquire("w#0", 1.0)

    def early(holder: str) -> bool | None:
        return release_after_call(
            branches.semaphore,
            MODEL,
            holder,
            2,
            5.0,
            notify=branches.wakes,
            cancelled=branches.jobs,
            on_error=errors.append,
        )

    assert early("a#0") is True and branches.holders() == {"b#0", "w#0"}
    assert branches.release("a#0", 6.0) is False  # ReleaseSlot after it: nothing to give back
    lossy.lose.add(SLOT_WRITE)  # b's give-back is applied, its answer lost: reported, not raised
    assert early("b#0") is None
    assert [type(e) for e in errors] == [ClientError]
    assert branches.release("b#0", 7.0) is False  # ReleaseSlot: given back already, counted once
    assert branches.state() == SlotState(1, {"w#0": 5.0 + DEFAULT_LEASE_SECONDS})


# -- many branches at once ------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "stopped_share"), [(7, 0.0), (8, 0.0), (9, 0.3), (10, 0.3)])
def test_branches_at_once_never_pass_the_limit_and_each_is_woken_once(
    dynamodb: Any, seed: int, stopped_share: float
) -> None:
    """Branches of six jobs take, wait, call and release at once on moto, GenerateImage's early release
    or not, while the keeper sweeps; some executions are stopped (``stopped_share``: their token is
    dead, their branch gone once it has asked). Never more calls than the limit, each waiting live
    branch woken exactly once, each dead token tried at most once, and nothing left: no slot, no lease,
    no ticket."""
    limit, store, lock = 3, store_of(dynamodb), threading.Lock()
    in_flight, peak, failures = [0], [0], list[Exception]()
    woken: Counter[str] = Counter()
    events: dict[str, threading.Event] = {}
    queued: set[str] = set()
    someone_waits, done = threading.Event(), threading.Event()
    plan = random.Random(seed)
    branches = [
        (f"job{j}#{i}", plan.randrange(60), plan.random() < 0.5, plan.random() < stopped_share)
        for j in range(6)
        for i in range(3)
    ]
    dead = {f"token-{holder}" for holder, _, _, stopped in branches if stopped}
    for holder, *_ in branches:
        events[f"token-{holder}"] = threading.Event()

    def notify(token: str, output: Mapping[str, Any]) -> bool:
        assert output["admission"] == "granted"
        with lock:
            woken[token] += 1
        if token in dead:
            return False
        events[token].set()
        return True

    def never(execution: str) -> bool:
        return False

    def branch(holder: str, second: int, early: bool, stopped: bool) -> None:
        pause = random.Random(holder).random
        semaphore = Semaphore(store)
        try:
            granted = semaphore.acquire(
                MODEL, ticket(holder, second=second), limit, 0.0, notify=notify, cancelled=never
            )
            if stopped:  # its execution stopped: the handler finds its own token dead and gives back
                if granted is not None and not notify(f"token-{holder}", {"admission": "granted"}):
                    semaphore.release(MODEL, holder, limit, 1.0, notify=notify, cancelled=never)
                return
            if granted is None:
                with lock:
                    queued.add(holder)
                someone_waits.set()
                assert events[f"token-{holder}"].wait(60), f"{holder} was never woken"
            else:  # the first holders call their model until a live branch has queued
                someone_waits.wait(10)
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            threading.Event().wait(pause() / 200)  # the model call
            with lock:
                in_flight[0] -= 1
            if early:  # GenerateImage's release right after the call, then ReleaseSlot
                release_after_call(
                    semaphore,
                    MODEL,
                    holder,
                    limit,
                    1.0,
                    notify=notify,
                    cancelled=never,
                    on_error=failures.append,
                )
            semaphore.release(MODEL, holder, limit, 1.0, notify=notify, cancelled=never)
        except Exception as exc:  # reported below: a thread's assert is otherwise lost
            failures.append(exc)

    def keeper() -> None:
        while not done.wait(0.05):
            try:
                Semaphore(store).sweep(MODEL, limit, 1.0, notify=notify, cancelled=never)
            except Exception as exc:
                failures.append(exc)

    threads = [threading.Thread(target=branch, args=b) for b in branches]
    sweeping = threading.Thread(target=keeper)
    for thread in [*threads, sweeping]:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    sweeping.join()
    for _ in range(10):  # the keeper's last rounds: stopped branches' tickets that no release reached
        if not store.oldest(MODEL, 1):
            break
        Semaphore(store).sweep(MODEL, limit, 2.0, notify=notify, cancelled=never)
    assert failures == []
    assert peak[0] <= limit and in_flight[0] == 0
    assert queued  # the test made branches wait (else it proves nothing about the queue)
    live = Counter({token: n for token, n in woken.items() if token not in dead})
    assert live == Counter({f"token-{holder}": 1 for holder in queued})  # each once, no one else
    assert all(n <= 1 for token, n in woken.items() if token in dead)
    assert not stopped_share or dead & set(woken)  # stopped branches' tokens were met
    assert store.read(MODEL) == SlotState(0, {})
    assert store.oldest(MODEL, 100) == [] and store.waiting(MODEL) == 0


# -- the pure parts -------------------------------------------------------------------------------


def test_decide() -> None:
    full = SlotState(2, {"a": 100.0, "b": 50.0})
    assert decide(full, "a", 2, 10.0).verdict == "held"
    assert decide(full, "c", 2, 10.0).verdict == "wait"
    reclaim = decide(full, "c", 2, 60.0)
    assert reclaim.verdict == "reclaim" and dict(reclaim.expired) == {"b": 50.0}
    assert decide(SlotState(1, {"a": 100.0}), "c", 2, 10.0).verdict == "reclaim"


def test_places_order_jobs_by_start_and_keep_a_branch_in_its_place() -> None:
    older = ticket_place("2026-11-30T10:00:00.000Z", holder_id("zz", 3), 0.0)
    newer = ticket_place("2026-11-30T10:00:01.000Z", holder_id("aa", 0), 0.0)
    assert older < newer
    assert ticket_place(None, "x#1", 0.0) == "1970-01-01T00:00:00.000+00:00#x#1"
    assert ticket("x#1").execution == "x"


def test_lease_outlasts_a_live_holder() -> None:
    # The deployed lease against the ASL's execution limit: tests/infra/test_time_budget.py
    # (test_an_admission_lease_outlasts_every_live_holder). The three defaults agree.
    assert Settings().admission_lease_seconds == DEFAULT_LEASE_SECONDS
    assert EngineConfig().admission_lease_seconds == DEFAULT_LEASE_SECONDS


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({MODEL: 0}, "would never let a call through"),
        ({MODEL: -2}, "would never let a call through"),
        ({MODEL: "four"}, "not 'four'"),
        ({MODEL: 2.5}, "not 2.5"),
        ({MODEL: True}, "not True"),
        ({MODEL: float("nan")}, "not nan"),
        ({MODEL: None}, "not None"),
        ("[4]", "expected an object"),
        ("{not json", "not a JSON object"),
    ],
)
def test_bad_quotas_are_refused(value: object, words: str) -> None:
    with pytest.raises(InvalidQuota, match="MODEL_CONCURRENCY") as raised:
        parse_quotas(value, source="MODEL_CONCURRENCY")
    assert words in str(raised.value)


def test_quotas_read_and_defaults() -> None:
    assert parse_quotas('{"stable-image-core": "4", "sd3-5-large": 2}', source="x") == {
        MODEL: 4,
        "sd3-5-large": 2,
    }
    assert parse_quotas("  ", source="x") == {}
    assert quota_of(MODEL, {MODEL: 7}) == 7
    assert quota_of(MODEL, {}) == default_quota(90) == 9  # 90 requests a minute, calls of 6 s or more
    assert quota_of("stable-image-ultra", {}) == 1


def test_a_bad_quota_stops_the_handlers_at_start_up() -> None:
    with pytest.raises(RuntimeError, match="MODEL_CONCURRENCY: stable-image-core: a quota of 0"):
        Settings.from_environ({"MODEL_CONCURRENCY": '{"stable-image-core": 0}'})
    assert Settings.from_environ({"MODEL_CONCURRENCY": '{"stable-image-core": 3}'}).model_concurrency == {
        MODEL: 3
    }
