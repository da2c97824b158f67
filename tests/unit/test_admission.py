"""Admission control's semaphore (core/admission.py) on moto's DynamoDB, under faults: a holder that
dies with its slot (its lease expires and the slot comes back), a lost write acknowledgement (the
take succeeded, the client saw an error: taking again by the same holder finds its slot, counted once),
a release retried, contention; and the refusal of bad quotas."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from image_pipeline.core.admission import (
    DEFAULT_LEASE_SECONDS,
    MAX_WAITING_RECORDS,
    DynamoSlotStore,
    InvalidQuota,
    NoSlot,
    Semaphore,
    SlotState,
    acquire_unless_cancelled,
    decide,
    default_quota,
    parse_quotas,
    quota_of,
    release_after_call,
)
from image_pipeline.core.settings import Settings
from moto import mock_aws

from imagegen.runtime.moto_atomic_writes import atomic_writes

TABLE = "slots"
MODEL = "stable-image-core"


@pytest.fixture
def dynamodb(aws_credentials: None) -> Iterator[Any]:
    # DynamoDB applies a conditional write atomically; moto needs the engine's lock for that.
    with mock_aws(), atomic_writes():
        client = boto3.client("dynamodb", region_name="us-west-2")
        client.create_table(
            TableName=TABLE,
            AttributeDefinitions=[{"AttributeName": "model", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "model", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def state(client: Any) -> SlotState:
    return DynamoSlotStore(client, TABLE).read(MODEL)


class LostAcknowledgement:
    """A client whose next ``update_item`` is applied by DynamoDB but answered with an error."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.lose_next = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def update_item(self, **kwargs: Any) -> Any:
        answer = self.client.update_item(**kwargs)
        if self.lose_next:
            self.lose_next = False
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "lost"}}, "UpdateItem")
        return answer


def test_takes_up_to_the_limit_then_no_slot(dynamodb: Any) -> None:
    semaphore = Semaphore(DynamoSlotStore(dynamodb, TABLE))
    granted = [semaphore.acquire(MODEL, f"job#{i}", 3, 100.0) for i in range(3)]
    assert [g.in_use for g in granted] == [1, 2, 3]
    with pytest.raises(NoSlot):
        semaphore.acquire(MODEL, "job#3", 3, 101.0)
    assert state(dynamodb).in_use == 3
    assert set(state(dynamodb).waiting) == {"job#3"}
    assert semaphore.release(MODEL, "job#0")
    later = semaphore.acquire(MODEL, "job#3", 3, 105.0)
    assert later.in_use == 3 and later.waited_seconds == pytest.approx(4.0)
    assert state(dynamodb).waiting == {}


def test_a_dead_holders_slot_comes_back_when_its_lease_expires(dynamodb: Any) -> None:
    semaphore = Semaphore(DynamoSlotStore(dynamodb, TABLE), lease_seconds=300)
    semaphore.acquire(MODEL, "killed#0", 1, 0.0)  # its branch dies: it never releases
    with pytest.raises(NoSlot):
        semaphore.acquire(MODEL, "next#0", 1, 299.0)
    granted = semaphore.acquire(MODEL, "next#0", 1, 301.0)
    assert granted.reclaimed == 1
    after = state(dynamodb)
    assert after.in_use == 1 and set(after.leases) == {"next#0"}
    assert not semaphore.release(MODEL, "killed#0")  # a late release of the dead one changes nothing
    assert state(dynamodb).in_use == 1


def test_a_lost_acknowledgement_is_taken_once(dynamodb: Any) -> None:
    lossy = LostAcknowledgement(dynamodb)
    semaphore = Semaphore(DynamoSlotStore(lossy, TABLE))
    lossy.lose_next = True
    with pytest.raises(ClientError):
        semaphore.acquire(MODEL, "job#0", 2, 10.0)  # written, but the branch saw an error
    assert state(dynamodb).in_use == 1
    again = semaphore.acquire(MODEL, "job#0", 2, 11.0)  # the state machine's retry of the take
    assert again.holder == "job#0"
    assert state(dynamodb).in_use == 1 and set(state(dynamodb).leases) == {"job#0"}
    semaphore.acquire(MODEL, "job#1", 2, 12.0)
    with pytest.raises(NoSlot):
        semaphore.acquire(MODEL, "job#2", 2, 12.0)


def test_a_release_retried_is_counted_once(dynamodb: Any) -> None:
    lossy = LostAcknowledgement(dynamodb)
    semaphore = Semaphore(DynamoSlotStore(lossy, TABLE))
    for holder in ("a#0", "b#0"):
        semaphore.acquire(MODEL, holder, 2, 0.0)
    lossy.lose_next = True
    with pytest.raises(ClientError):
        semaphore.release(MODEL, "a#0")  # given back; the answer lost
    assert not semaphore.release(MODEL, "a#0")  # retried
    assert not semaphore.release(MODEL, "a#0")  # and again
    after = state(dynamodb)
    assert after.in_use == 1 and set(after.leases) == {"b#0"}


def test_the_release_after_the_call_counts_once_and_never_raises(dynamodb: Any) -> None:
    lossy = LostAcknowledgement(dynamodb)
    store = DynamoSlotStore(lossy, TABLE)
    semaphore = Semaphore(store)
    errors: list[Exception] = []
    semaphore.acquire(MODEL, "a#0", 2, 0.0)
    semaphore.acquire(MODEL, "b#0", 2, 0.0)
    assert release_after_call(store, MODEL, "a#0", on_error=errors.append) is True  # GenerateImage
    assert not semaphore.release(MODEL, "a#0")  # ReleaseSlot after it: nothing to give back
    lossy.lose_next = True  # b's early release is applied, its answer lost: reported, not raised
    assert release_after_call(store, MODEL, "b#0", on_error=errors.append) is None
    assert [type(e) for e in errors] == [ClientError]
    assert not semaphore.release(MODEL, "b#0")  # ReleaseSlot: already given back, counted once
    after = state(dynamodb)
    assert after.in_use == 0 and not after.leases


class Throttling:
    """A client whose ``update_item`` DynamoDB throttles (nothing written) while ``on``."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.on = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def update_item(self, **kwargs: Any) -> Any:
        if self.on:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                "UpdateItem",
            )
        return self.client.update_item(**kwargs)


def test_a_throttled_take_waits_instead_of_failing(dynamodb: Any) -> None:
    throttling = Throttling(dynamodb)
    semaphore = Semaphore(DynamoSlotStore(throttling, TABLE))
    semaphore.acquire(MODEL, "a#0", 1, 0.0)
    throttling.on = True
    with pytest.raises(NoSlot, match="throttling"):  # the state machine waits and asks again
        semaphore.acquire(MODEL, "b#0", 2, 1.0)
    assert state(dynamodb).in_use == 1 and not state(dynamodb).waiting  # nothing was written
    throttling.on = False
    assert semaphore.acquire(MODEL, "b#0", 2, 2.0).holder == "b#0"


def test_a_failed_waiting_record_is_ignored(dynamodb: Any) -> None:
    throttling = Throttling(dynamodb)
    store = DynamoSlotStore(throttling, TABLE)
    semaphore = Semaphore(store)
    semaphore.acquire(MODEL, "a#0", 1, 0.0)

    def throttled_note(*args: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "x"}}, "UpdateItem")

    store.note_waiting = throttled_note  # type: ignore[method-assign]
    with pytest.raises(NoSlot, match="all 1 slots"):  # waits all the same, unrecorded
        semaphore.acquire(MODEL, "b#0", 1, 1.0)
    assert not state(dynamodb).waiting


def test_waiting_records_are_capped(dynamodb: Any) -> None:
    semaphore = Semaphore(DynamoSlotStore(dynamodb, TABLE))
    semaphore.acquire(MODEL, "a#0", 1, 0.0)
    for i in range(MAX_WAITING_RECORDS + 5):
        with pytest.raises(NoSlot):
            semaphore.acquire(MODEL, f"w#{i}", 1, 1.0)
    assert len(state(dynamodb).waiting) == MAX_WAITING_RECORDS  # the item stays small
    assert semaphore.last_waiting == MAX_WAITING_RECORDS  # "at least" this many wait
    assert semaphore.release(MODEL, "a#0")
    granted = semaphore.acquire(MODEL, f"w#{MAX_WAITING_RECORDS + 1}", 1, 5.0)  # an unrecorded waiter
    assert granted.waited_seconds is None and state(dynamodb).in_use == 1


def test_a_waiting_branch_of_a_cancelled_job_stops_waiting(dynamodb: Any) -> None:
    store = DynamoSlotStore(dynamodb, TABLE)
    semaphore = Semaphore(store)
    looked: list[str] = []

    def cancelled(answer: bool) -> Any:
        return lambda: looked.append("looked") or answer

    assert acquire_unless_cancelled(semaphore, MODEL, "a#0", 1, 0.0, cancelled=cancelled(True)) is not None
    assert looked == []  # a take that succeeds never looks for a cancellation
    with pytest.raises(NoSlot):  # full, not cancelled: wait
        acquire_unless_cancelled(semaphore, MODEL, "b#0", 1, 1.0, cancelled=cancelled(False))
    assert set(state(dynamodb).waiting) == {"b#0"}
    # full and b's job cancelled: b stops waiting, takes nothing, and its waiting record goes
    assert acquire_unless_cancelled(semaphore, MODEL, "b#0", 1, 2.0, cancelled=cancelled(True)) is None
    after = state(dynamodb)
    assert after.in_use == 1 and set(after.leases) == {"a#0"} and not after.waiting
    assert looked == ["looked", "looked"]


def test_a_release_of_a_branch_that_only_waited_forgets_its_wait(dynamodb: Any) -> None:
    semaphore = Semaphore(DynamoSlotStore(dynamodb, TABLE))
    semaphore.acquire(MODEL, "a#0", 1, 0.0)
    with pytest.raises(NoSlot):
        semaphore.acquire(MODEL, "b#0", 1, 1.0)
    assert not semaphore.release(MODEL, "b#0")
    assert state(dynamodb).waiting == {} and state(dynamodb).in_use == 1


def test_contention_never_passes_the_limit(dynamodb: Any) -> None:
    limit, granted, lock = 4, [], threading.Lock()

    def branch(i: int) -> None:
        semaphore = Semaphore(DynamoSlotStore(dynamodb, TABLE))
        try:
            semaphore.acquire(MODEL, f"job#{i}", limit, 50.0)
        except NoSlot:
            return
        with lock:
            granted.append(i)

    threads = [threading.Thread(target=branch, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == limit
    assert state(dynamodb).in_use == limit == len(state(dynamodb).leases)


def test_decide() -> None:
    full = SlotState(2, {"a": 100.0, "b": 50.0})
    assert decide(full, "a", 2, 10.0).verdict == "held"
    assert decide(full, "c", 2, 10.0).verdict == "wait"
    reclaim = decide(full, "c", 2, 60.0)
    assert reclaim.verdict == "reclaim" and dict(reclaim.expired) == {"b": 50.0}
    assert decide(SlotState(1, {"a": 100.0}), "c", 2, 10.0).verdict == "reclaim"


def test_lease_outlasts_a_live_holder() -> None:
    # GenerateImage: 4 attempts of at most 340 s (its Task's TimeoutSeconds) and 3 delays of at most 20 s.
    assert DEFAULT_LEASE_SECONDS >= 4 * 340 + 3 * 20


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({MODEL: 0}, "would never let a call through"),
        ({MODEL: -2}, "would never let a call through"),
        ({MODEL: "four"}, "not 'four'"),
        ({MODEL: 2.5}, "not 2.5"),
        ({MODEL: True}, "not True"),
        ({MODEL: float("nan")}, "not nan"),
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
    assert quota_of(MODEL, {MODEL: 7}) == 7
    assert quota_of(MODEL, {}) == default_quota(90) == 9  # 90 requests a minute, calls of 6 s or more
    assert quota_of("stable-image-ultra", {}) == 1


def test_a_bad_quota_stops_the_handlers_at_start_up() -> None:
    with pytest.raises(RuntimeError, match="MODEL_CONCURRENCY: stable-image-core: a quota of 0"):
        Settings.from_environ({"MODEL_CONCURRENCY": '{"stable-image-core": 0}'})
    assert Settings.from_environ({"MODEL_CONCURRENCY": '{"stable-image-core": 3}'}).model_concurrency == {
        MODEL: 3
    }
