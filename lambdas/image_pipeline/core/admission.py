"""Admission control: one counting semaphore per model, shared by every execution (issue 15).

Before a Map branch calls Bedrock it takes a slot of its model (``acquire``) and gives it back when the
call has ended (``release``), so the calls in flight for a model never exceed its configured quota in
the deployment's Region. The wait for a slot is done by Step Functions (a ``Retry`` on the named error
``NoSlot``), not by a sleeping Lambda: ``acquire`` answers at once.

The state of one model is one item: ``in_use`` (the count) and one attribute per holder,
``lease:<holder>``, whose value is the time its lease expires. Every write changes the count and the
leases together, in one conditional ``UpdateItem`` (DynamoDB applies it atomically), so the count always
equals the number of leases:

* take: ``in_use < limit AND attribute_not_exists(lease:<holder>)``: count + 1, lease set;
* give back: ``attribute_exists(lease:<holder>)``: count - 1, lease removed (a second release of the
  same holder fails its condition and changes nothing: never counted twice);
* reclaim an expired lease: ``lease:<holder> = <the expiry read>``: count - 1, lease removed (only the
  lease that was seen expired; a renewed one is left alone).

When the take's condition fails, DynamoDB returns the item as the condition saw it
(``ReturnValuesOnConditionCheckFailure``), and :func:`decide` (a pure function of the item, the holder,
the limit and the time; the simulation in ``benchmarks/`` calls the same :class:`Semaphore` over an in-memory store)
says why: the holder already has a lease (its earlier take succeeded and its answer was lost: the
take is idempotent by holder id), some leases have expired (a branch died holding them: reclaim, then
try again), or the model is full (wait: ``NoSlot``). A holder id is the execution name and the image
index, the same on every retry of a branch.

Waiting branches are recorded as ``wait:<holder>`` (when it first found no slot) so the metrics can say
how many wait and how long a slot took; a take removes its own, a release removes it too. At most
:data:`MAX_WAITING_RECORDS` are kept, and a failed record is ignored: every write to the item costs a
write unit per KB of it and one item is one partition (1,000 write units a second), which
``benchmarks/simulation.py`` showed thousands of records in a burst would pass. A take that DynamoDB
throttles is answered ``NoSlot``: the branch waits and asks again instead of failing its image.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from image_pipeline.models.facts import model_facts

LEASE_PREFIX = "lease:"
WAIT_PREFIX = "wait:"
COUNT = "in_use"
#: Conservative calls in flight per model when neither configuration nor an override gives one:
#: the documented requests-per-minute quota of the model divided by this (a call of 6 s or more then
#: keeps the rate under the quota; see docs/decisions.md).
SECONDS_PER_CALL_ASSUMED = 6
#: How long a lease lasts: the longest a live branch can hold one (GenerateImage's Task allows 340 s an
#: attempt; a slot is held across its attempts: 4 x 340 s plus the retries' delays), so a live holder
#: never loses its slot; a dead holder's slot comes back at most this long after it was taken.
DEFAULT_LEASE_SECONDS = 1500
#: A waiting record older than this is forgotten (a branch waits at most as long as its execution,
#: ``TimeoutSeconds`` 1800 in the ASL).
WAIT_RECORD_SECONDS = 1800
#: At most this many waiting records in a model's item (about 6 KB). Every write to the item costs one
#: write unit per KB of it, and one item is one partition, which takes 1,000 write units a second
#: (benchmarks/simulation.py found thousands of records in a burst: 190 KB items, every write throttled);
#: past the cap a branch waits unrecorded, so the waiting metric reads "at least" and its time waited
#: is not measured.
MAX_WAITING_RECORDS = 100
#: DynamoDB's answers when it throttles a request: a take that is throttled is answered NoSlot (the
#: branch asks again after the state machine's backoff) rather than failing its image.
THROTTLING_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)


class NoSlot(Exception):
    """The model's slots are all held: the state machine waits and asks again (``Retry``)."""


class InvalidQuota(ValueError):
    """A configured quota that is not a whole number of at least 1."""


def parse_quotas(value: object, *, source: str) -> dict[str, int]:
    """``{model: calls in flight}`` from a mapping or its JSON text; anything but whole numbers >= 1 is
    refused with a message naming ``source``, the model and the value."""
    data = value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        try:
            data = json.loads(text)
        except ValueError:
            raise InvalidQuota(
                f'{source}: not a JSON object of model -> calls in flight (such as {{"stable-image-core": 4}}): {value!r}'
            ) from None
    if not isinstance(data, Mapping):
        raise InvalidQuota(f"{source}: expected an object of model -> calls in flight, not {data!r}")
    quotas: dict[str, int] = {}
    for model, limit in data.items():
        quotas[str(model)] = check_quota(limit, what=f"{source}: {model}")
    return quotas


def check_quota(limit: object, *, what: str) -> int:
    """``limit`` as a whole number of calls in flight, at least 1; a clear error otherwise."""
    number: float
    if isinstance(limit, bool):
        raise InvalidQuota(
            f"{what}: the quota must be a whole number of calls in flight, at least 1, not {limit!r}"
        )
    if isinstance(limit, int | float):
        number = limit
    elif isinstance(limit, str):
        try:
            number = float(limit.strip())
        except ValueError:
            raise InvalidQuota(
                f"{what}: the quota must be a whole number of calls in flight, at least 1, not {limit!r}"
            ) from None
    else:
        raise InvalidQuota(
            f"{what}: the quota must be a whole number of calls in flight, at least 1, not {limit!r}"
        )
    if not math.isfinite(number) or number != int(number):
        raise InvalidQuota(
            f"{what}: the quota must be a whole number of calls in flight, at least 1, not {limit!r}"
        )
    if number < 1:
        raise InvalidQuota(
            f"{what}: a quota of {int(number)} would never let a call through; give at least 1 call in flight"
        )
    return int(number)


def default_quota(requests_per_minute: int) -> int:
    """The conservative calls in flight of a model documented at ``requests_per_minute``."""
    return max(1, requests_per_minute // (60 // SECONDS_PER_CALL_ASSUMED))


@dataclass(frozen=True)
class SlotState:
    """One model's item as read: its count, each holder's lease expiry and each waiter's first wait."""

    in_use: int = 0
    leases: Mapping[str, float] = field(default_factory=dict)
    waiting: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_item(cls, item: Mapping[str, Any] | None) -> SlotState:
        """From a DynamoDB item in the low-level client's shape (``{"N": "1"}``), or None."""
        if not item:
            return cls()
        leases = {
            k[len(LEASE_PREFIX) :]: float(v["N"]) for k, v in item.items() if k.startswith(LEASE_PREFIX)
        }
        waiting = {k[len(WAIT_PREFIX) :]: float(v["N"]) for k, v in item.items() if k.startswith(WAIT_PREFIX)}
        return cls(int(item.get(COUNT, {"N": "0"})["N"]), leases, waiting)


Verdict = Literal["held", "reclaim", "wait"]


@dataclass(frozen=True)
class Decision:
    """What to do when a take's condition failed: ``held`` (the holder has its slot already),
    ``reclaim`` (these expired leases first, then take again) or ``wait``."""

    verdict: Verdict
    expired: Mapping[str, float] = field(default_factory=dict)


def decide(state: SlotState, holder: str, limit: int, now: float) -> Decision:
    """Why a take failed, from the item read after it (pure: the simulation uses it too)."""
    if holder in state.leases:
        return Decision("held")
    expired = {h: t for h, t in state.leases.items() if t <= now}
    if expired:
        return Decision("reclaim", expired)
    if state.in_use < limit:  # a release came between the take and the read
        return Decision("reclaim", {})
    return Decision("wait")


class SlotStore(Protocol):
    """Where the slots are kept: DynamoDB (:class:`DynamoSlotStore`) or, in the simulation, memory.
    Each method is one atomic conditional write; False means its condition did not hold."""

    def take(self, model: str, holder: str, limit: int, expires: float) -> Taken | SlotState:
        """Count + 1 and the holder's lease, if under ``limit`` and not held; when not taken, the item
        as the failed condition saw it (DynamoDB returns it with the refusal: no second read)."""
        ...

    def give_back(self, model: str, holder: str, expected_expiry: float | None) -> bool:
        """Count - 1 and the lease removed, if the holder has one (equal to ``expected_expiry`` when
        given); the holder's waiting record goes too."""
        ...

    def read(self, model: str) -> SlotState:
        """The model's item, read consistently."""
        ...

    def note_waiting(self, model: str, holder: str, now: float, forget: tuple[str, ...]) -> None:
        """Record the holder's first wait (kept if already there) and forget the ``forget`` waiters."""
        ...


@dataclass(frozen=True)
class Taken:
    """A take's write: the count after it, and the holder's first wait (removed), if it waited."""

    in_use: int
    waited_since: float | None = None


@dataclass(frozen=True)
class Granted:
    """A slot taken: the count after the take (None when it was already held), the seconds the holder
    waited for it (None when it never waited) and how many were waiting at the last read."""

    holder: str
    in_use: int | None
    waited_seconds: float | None
    reclaimed: int = 0


@dataclass
class Semaphore:
    """Counting semaphore per model over a :class:`SlotStore` (see the module docstring)."""

    store: SlotStore
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    #: Takes tried after reclaiming, before answering ``NoSlot`` (others may take the freed slots first).
    attempts: int = 3
    last_waiting: int = 0

    def acquire(self, model: str, holder: str, limit: int, now: float) -> Granted:
        """Take a slot of ``model`` for ``holder`` or raise :class:`NoSlot`; idempotent by holder."""
        reclaimed = 0
        for _ in range(self.attempts):
            try:
                taken = self.store.take(model, holder, limit, now + self.lease_seconds)
            except Exception as exc:
                if _throttled(exc):  # not written: wait and ask again, as when full
                    raise NoSlot(f"{model}: the slots' table is throttling; asking again") from None
                raise
            if isinstance(taken, Taken):
                waited = None if taken.waited_since is None else max(0.0, now - taken.waited_since)
                return Granted(holder, taken.in_use, waited, reclaimed)
            state = taken
            self.last_waiting = len(state.waiting)
            decision = decide(state, holder, limit, now)
            if decision.verdict == "held":
                return Granted(holder, None, None, reclaimed)
            if decision.verdict == "wait":
                stale = tuple(h for h, t in state.waiting.items() if now - t > WAIT_RECORD_SECONDS)
                recorded = holder in state.waiting
                first = not recorded and len(state.waiting) - len(stale) < MAX_WAITING_RECORDS
                if first or (stale and recorded):  # a branch's first wait (or old ones to forget)
                    self._note_waiting(model, holder, now, stale)
                self.last_waiting = len(state.waiting) - len(stale) + first
                raise NoSlot(f"{model}: all {limit} slots are in use")
            for dead, expiry in decision.expired.items():
                try:
                    reclaimed += self.store.give_back(model, dead, expiry)
                except Exception as exc:
                    if _throttled(exc):
                        raise NoSlot(f"{model}: the slots' table is throttling; asking again") from None
                    raise
        raise NoSlot(f"{model}: all {limit} slots are in use (contended)")

    def _note_waiting(self, model: str, holder: str, now: float, stale: tuple[str, ...]) -> None:
        """Record ``holder``'s first wait (kept if there) and forget ``stale`` records; the records are
        for the metrics only, so a failed write is ignored (the branch waits all the same)."""
        try:
            self.store.note_waiting(model, holder, now, stale)
        except Exception:  # throttled, or any client error: a waiting record is not worth an image
            return

    def release(self, model: str, holder: str) -> bool:
        """Give the holder's slot back; False (and nothing changed) when it holds none."""
        return self.store.give_back(model, holder, None)


def _throttled(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code") in THROTTLING_CODES


def _condition_failed(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoSlotStore:
    """The slots in a DynamoDB table (partition key ``model``, string), through the low-level client."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def _key(self, model: str) -> dict[str, Any]:
        return {"model": {"S": model}}

    def take(self, model: str, holder: str, limit: int, expires: float) -> Taken | SlotState:
        try:
            response = self.client.update_item(
                TableName=self.table,
                Key=self._key(model),
                UpdateExpression="SET #count = if_not_exists(#count, :zero) + :one, #lease = :expires REMOVE #wait",
                ConditionExpression="(attribute_not_exists(#count) OR #count < :limit) AND attribute_not_exists(#lease)",
                ExpressionAttributeNames={
                    "#count": COUNT,
                    "#lease": LEASE_PREFIX + holder,
                    "#wait": WAIT_PREFIX + holder,
                },
                ExpressionAttributeValues={
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":expires": {"N": repr(float(expires))},
                },
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except Exception as exc:
            if _condition_failed(exc):
                item = getattr(exc, "response", {}).get("Item")
                return SlotState.from_item(item) if item else self.read(model)
            raise
        old = response.get("Attributes", {})
        waited = old.get(WAIT_PREFIX + holder)
        return Taken(int(old.get(COUNT, {"N": "0"})["N"]) + 1, float(waited["N"]) if waited else None)

    def give_back(self, model: str, holder: str, expected_expiry: float | None) -> bool:
        names = {"#count": COUNT, "#lease": LEASE_PREFIX + holder, "#wait": WAIT_PREFIX + holder}
        values: dict[str, Any] = {":one": {"N": "1"}}
        condition = "attribute_exists(#lease)"
        if expected_expiry is not None:
            condition = "#lease = :expected"
            values[":expected"] = {"N": repr(float(expected_expiry))}
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(model),
                UpdateExpression="SET #count = #count - :one REMOVE #lease, #wait",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except Exception as exc:
            if _condition_failed(exc):
                if expected_expiry is None:  # no slot; its waiting record (a branch that gave up) goes
                    self._forget_waiting(model, (holder,))
                return False
            raise
        return True

    def read(self, model: str) -> SlotState:
        item = self.client.get_item(TableName=self.table, Key=self._key(model), ConsistentRead=True).get(
            "Item"
        )
        return SlotState.from_item(item)

    def note_waiting(self, model: str, holder: str, now: float, forget: tuple[str, ...]) -> None:
        names = {"#wait": WAIT_PREFIX + holder}
        update = "SET #wait = if_not_exists(#wait, :now)"
        gone = [f"#w{i}" for i in range(len(forget))]
        names.update({g: WAIT_PREFIX + h for g, h in zip(gone, forget, strict=True)})
        if gone:
            update += " REMOVE " + ", ".join(gone)
        self.client.update_item(
            TableName=self.table,
            Key=self._key(model),
            UpdateExpression=update,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={":now": {"N": repr(float(now))}},
        )

    def _forget_waiting(self, model: str, holders: tuple[str, ...]) -> None:
        names = {f"#w{i}": WAIT_PREFIX + h for i, h in enumerate(holders)}
        self.client.update_item(
            TableName=self.table,
            Key=self._key(model),
            UpdateExpression="REMOVE " + ", ".join(names),
            ExpressionAttributeNames=names,
        )


def acquire_unless_cancelled(
    semaphore: Semaphore, model: str, holder: str, limit: int, now: float, *, cancelled: Callable[[], bool]
) -> Granted | None:
    """Take a slot, or, when there is none and the branch's job was cancelled (``cancelled()``, looked
    at only then: a take that succeeds costs no extra call), stop waiting: the branch's waiting record
    is forgotten and None is returned (its GenerateImage then records ``CANCELLED`` without calling the
    model). Otherwise :class:`NoSlot`, and the state machine waits and asks again."""
    try:
        return semaphore.acquire(model, holder, limit, now)
    except NoSlot:
        if not cancelled():
            raise
    semaphore.release(model, holder)  # holds none: only its waiting record goes
    return None


def release_after_call(
    store: SlotStore, model: str, holder: str, *, on_error: Callable[[Exception], None]
) -> bool | None:
    """Give ``holder``'s slot back right after its model call (GenerateImage, before its upload).

    True when given back, False when the holder had none (admission off for it, or already given back);
    None when the write failed: ``on_error`` is told and the state machine's ``ReleaseSlot`` (which
    runs after GenerateImage either way) gives it back, or its lease expires. Never raises, so a
    DynamoDB hiccup cannot fail an image the model has already made. A slot is never counted twice: the
    later ``ReleaseSlot`` finds no lease and changes nothing (``give_back``'s condition).
    """
    try:
        return store.give_back(model, holder, None)
    except Exception as exc:  # botocore's errors, or any client failure: ReleaseSlot is the safety net
        on_error(exc)
        return None


def quota_of(model: str, configured: Mapping[str, int]) -> int:
    """The calls in flight allowed for ``model``: configured, or the conservative default of its
    documented requests-per-minute quota (``models/model_facts.json``)."""
    if model in configured:
        return configured[model]
    return default_quota(model_facts(model).quota.default_requests_per_minute)


def holder_id(execution_name: str, index: int) -> str:
    """The holder of one Map branch: its execution and image, the same on every retry of the branch."""
    return f"{execution_name}#{index}"
