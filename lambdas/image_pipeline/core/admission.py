"""Admission control: one counting semaphore per model, shared by every execution, with a queue (issue 15).

Before a Map branch calls Bedrock it takes a slot of its model, and gives it back when the call has
ended, so the calls in flight for a model never exceed its configured quota in the deployment's Region.
A branch that finds no slot does not poll: it leaves a **ticket** (its Step Functions task token) in
the model's queue and its ``AcquireSlot`` state waits for the token (``.waitForTaskToken``), costing
no state transition and no write while it waits. Whoever gives a slot back hands it to the oldest
ticket and wakes its branch with ``SendTaskSuccess``.

**The slots.** The state of one model is one item: ``in_use`` (the count) and one attribute per
holder, ``lease:<holder>``, whose value is the time its lease expires. Every change is one conditional
``UpdateItem`` (DynamoDB applies it atomically), so the count always equals the number of leases:

* take: ``in_use < limit AND attribute_not_exists(lease:<holder>)``: count + 1, lease set;
* give back: ``attribute_exists(lease:<holder>)``: count - 1, lease removed (a second release of the
  same holder fails its condition and changes nothing: never counted twice);
* hand over: ``attribute_exists(lease:<giver>) AND attribute_not_exists(lease:<taker>)``: the giver's
  lease removed, the taker's set, the count unchanged (a waiting branch gets the slot without it ever
  being free for a newcomer to take);
* reclaim an expired lease: ``lease:<holder> = <the expiry read>``: count - 1, lease removed (only the
  lease that was seen expired; a renewed one is left alone).

When a take's condition fails, DynamoDB returns the item as the condition saw it
(``ReturnValuesOnConditionCheckFailure``), and :func:`decide` says why: the holder already has a lease
(its earlier take succeeded and its answer was lost: takes are idempotent by holder id), some leases
have expired (a branch died holding them: reclaim, then try again), or the model is full (queue).

**The queue.** A ticket is an item of the waiters table: partition key the model, sort key its
``place`` (the execution's start time, then the holder: the oldest job is served first, and a branch
that waits again after its wait timed out keeps its place, its token replaced). Handing a ticket a slot
starts by deleting it on the condition that it still carries the token read (``claim``): exactly one
hand-off wins a ticket. No wake-up is lost, because every step that frees a slot and every step that
makes a ticket visible is followed by :meth:`Semaphore.fill`, which reads both with strongly consistent
reads and hands free slots to waiting tickets: whichever of the two happened last sees the other. (The
one step that frees a slot without a fill is GenerateImage's early hand-off, to keep its time inside the
image's budget; ``ReleaseSlot``, the branch's next state, fills right after it.)

A branch whose execution was stopped while it waited cannot be woken (``SendTaskSuccess`` answers
``TaskTimedOut``, ``TaskDoesNotExist`` or ``InvalidToken``): the slot it was handed goes on to the next
ticket. A ticket of a cancelled job is woken with ``cancelled`` and holds no slot. A branch whose wake-up
was lost (a crash between the hand-over and ``SendTaskSuccess``) is rescued by its state's
``TimeoutSeconds``: the state machine asks again, and the take finds the branch's lease (``held``).
A slot held by a branch that died is reclaimed when its lease has expired by the keeper's round
(:meth:`Semaphore.sweep`, a schedule every minute), which also wakes the tickets of cancelled jobs.

The pure parts (:func:`decide`, :class:`Semaphore`) run unchanged in ``benchmarks/simulation.py`` over an
in-memory store (``imagegen.testing.memory_slots``), which ``tests/unit/test_memory_slots.py`` holds to
the DynamoDB store's answers.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from image_pipeline.models.facts import model_facts

LEASE_PREFIX = "lease:"
COUNT = "in_use"
#: The waiters table's keys: the model (partition) and the ticket's place in the queue (sort).
QUEUE_KEY = "model"
PLACE = "place"
#: The item beside a model's tickets that counts them (for the metric of branches waiting); its sort
#: key sorts after every place (places start with a date), so a query of places stops before it.
WAITING_COUNTER_PLACE = "~waiting"
#: Conservative calls in flight per model when neither configuration nor an override gives one:
#: the documented requests-per-minute quota of the model divided by this (a call of 6 s or more then
#: keeps the rate under the quota; see docs/decisions.md).
SECONDS_PER_CALL_ASSUMED = 6
#: How long a lease lasts: the longest a live branch can hold one, which is its execution's
#: ``TimeoutSeconds`` (1800 s, statemachine/generate_images.asl.json): a slot is held across
#: GenerateImage's retries, whose attempts together (each retrier counting its own, 355 s each) could
#: last longer than the execution. So a live holder never loses its slot, and a dead holder's comes back
#: at most this long after it was taken (tests/infra/test_time_budget.py holds it to the ASL).
DEFAULT_LEASE_SECONDS = 1800
#: A ticket the queue no longer serves is deleted by DynamoDB's TTL this long after it was written
#: (the longest a branch can wait is its execution's ``TimeoutSeconds``, 1800 s).
TICKET_TTL_SECONDS = 2 * 3600
#: At most this many tickets looked at by one hand-off, and rounds of one fill (stale tickets, whose
#: branch has gone, are skipped and deleted): a release's work and time are bounded
#: (``time_budget.admission_release_bound``); the next release or fill goes on.
HAND_OFF_TICKETS = 3
#: Tickets the keeper's round (:meth:`Semaphore.sweep`) reads looking for cancelled jobs, the jobs it
#: looks up (a ListObjectsV2 each) and the tickets it wakes, at most, in one round.
SWEEP_TICKETS = 100
SWEEP_LOOKUPS = 5
SWEEP_WAKES = 5
#: Pages (1 MB each, about 800 tickets) a keeper round's recount of the queue reads at most.
RECOUNT_PAGES = 5
#: Expired leases reclaimed and stale tickets dropped, at most, by one keeper round.
SWEEP_RECLAIMS = 10
SWEEP_DROPS = 10
#: Leases of one ended execution given back at most by :meth:`Semaphore.forget` on one model: a request
#: has at most 40 images (``Settings.max_images_per_request``), one lease each.
FORGET_LEASES = 40
#: ``AcquireSlot``'s ``TimeoutSeconds`` in statemachine/generate_images.asl.json (a unit test holds them
#: equal): a waiting branch asks again, renewing its ticket, at least this often.
WAIT_SECONDS = 300
#: A ticket not renewed for this long belongs to a branch that stopped waiting (its execution ended): the
#: wait, the state machine's retry of it (1 s, full jitter) and the Admission function's start, with room.
STALE_TICKET_SECONDS = WAIT_SECONDS + 60
#: Expired leases given back at most by one take or one round of fill (a keeper round frees the rest).
RECLAIMS_PER_STEP = 3
#: GenerateImage hands its slot on right after the model's answer to the oldest ticket alone (when that
#: branch has gone, the slot is given back and ``ReleaseSlot``'s fill serves the queue): its time is
#: inside the image's budget.
EARLY_HAND_OFF_TICKETS = 1
#: DynamoDB's answers when it throttles a request: a take that is throttled is answered NoSlot (the
#: state machine asks again after a short backoff) rather than failing its image.
THROTTLING_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
#: ``SendTaskSuccess``'s answers for a token whose task no longer waits
#: (https://docs.aws.amazon.com/step-functions/latest/apireference/API_SendTaskSuccess.html, read 2026-11-30).
DEAD_TOKEN_CODES = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})


class NoSlot(Exception):
    """The slots' table throttled the take: the state machine asks again after a short backoff."""


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
    """One model's item as read: its count and each holder's lease expiry."""

    in_use: int = 0
    leases: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_item(cls, item: Mapping[str, Any] | None) -> SlotState:
        """From a DynamoDB item in the low-level client's shape (``{"N": "1"}``), or None."""
        if not item:
            return cls()
        leases = {
            k[len(LEASE_PREFIX) :]: float(v["N"]) for k, v in item.items() if k.startswith(LEASE_PREFIX)
        }
        return cls(int(item.get(COUNT, {"N": "0"})["N"]), leases)


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


@dataclass(frozen=True)
class Ticket:
    """A waiting branch: its holder id, the task token its ``AcquireSlot`` waits for, its place in the
    queue (``<execution start>#<holder>``) and when it first waited."""

    holder: str
    token: str
    place: str
    since: float

    @property
    def execution(self) -> str:
        """The execution (job) the branch belongs to: the holder id without its image index."""
        return self.holder.rsplit("#", 1)[0]


HandOver = Literal["moved", "taker_holds", "giver_gone"]


class SlotStore(Protocol):
    """Where the slots and the queue are kept: DynamoDB (:class:`DynamoSlotStore`) or, in the simulation,
    memory. Each method is one atomic step; False means its condition did not hold."""

    def take(self, model: str, holder: str, limit: int, expires: float) -> Taken | SlotState:
        """Count + 1 and the holder's lease, if under ``limit`` and not held; when not taken, the item
        as the failed condition saw it (DynamoDB returns it with the refusal: no second read)."""
        ...

    def give_back(self, model: str, holder: str, expected_expiry: float | None) -> bool:
        """Count - 1 and the lease removed, if the holder has one (equal to ``expected_expiry`` when given)."""
        ...

    def hand_over(
        self, model: str, giver: str, taker: str, expires: float, giver_expiry: float | None = None
    ) -> HandOver:
        """The giver's lease becomes the taker's (count unchanged): ``moved``; ``taker_holds`` when the
        taker has a lease already, ``giver_gone`` when the giver has none, or not the one of
        ``giver_expiry`` when that is given (nothing changed)."""
        ...

    def renew(self, model: str, holder: str, seen: float, expires: float) -> bool:
        """The holder's lease, if it is still the one of ``seen``, now expires at ``expires``."""
        ...

    def read(self, model: str) -> SlotState:
        """The model's item, read consistently."""
        ...

    def enqueue(self, model: str, ticket: Ticket) -> bool:
        """Put the ticket in the queue (replacing one at its place: a branch waiting again keeps its
        place with its new token); True when its place was empty (a branch's first wait)."""
        ...

    def oldest(self, model: str, count: int) -> list[Ticket]:
        """The first ``count`` tickets of the queue, oldest place first (a consistent read)."""
        ...

    def claim(self, model: str, ticket: Ticket) -> bool:
        """Delete the ticket if it is still there with the same token: True for exactly one claimant."""
        ...

    def requeue(self, model: str, ticket: Ticket) -> None:
        """Put a claimed ticket back, unless its place has been taken again since (a newer token)."""
        ...

    def waiting(self, model: str) -> int:
        """How many tickets the queue holds (a counter kept beside them, for the metric)."""
        ...

    def recount(self, model: str) -> int | None:
        """Count the tickets and set the counter to it (it drifts when an answer is lost: the update
        beside a claim or an enqueue is not idempotent), unless the counter moved meanwhile; None, the
        counter left, then or when the queue is longer than :data:`RECOUNT_PAGES` pages of a COUNT query."""
        ...


@dataclass(frozen=True)
class Taken:
    """A take's write: the count after it."""

    in_use: int


@dataclass(frozen=True)
class Granted:
    """A slot taken: the count after the take (None when it was already held or handed over)."""

    holder: str
    in_use: int | None
    reclaimed: int = 0
    #: The lease's expiry as this take wrote it: a step that undoes the grant gives back that lease
    #: only (``release(..., expected=...)``), never a newer one the holder wrote since. Not compared:
    #: two grants are the same grant whatever the clock said.
    expires: float | None = field(default=None, compare=False)


#: Wakes a waiting branch: ``notify(token, output)`` sends ``SendTaskSuccess``; False when the token's
#: task no longer waits (its execution stopped, or its wait timed out); other errors raise.
Notify = Callable[[str, Mapping[str, Any]], bool]
#: ``cancelled(execution)``: whether that job was cancelled (``DELETE /jobs/{id}``).
Cancelled = Callable[[str], bool]


def granted_output(ticket: Ticket, now: float) -> dict[str, Any]:
    """What a woken branch's ``AcquireSlot`` answers: the slot is its, after this many seconds."""
    return {
        "holder": ticket.holder,
        "admission": "granted",
        "waited_seconds": round(max(0.0, now - ticket.since), 3),
    }


def cancelled_output(ticket: Ticket) -> dict[str, Any]:
    """What a woken branch of a cancelled job answers: no slot (GenerateImage records ``CANCELLED``)."""
    return {"holder": ticket.holder, "admission": "cancelled"}


@dataclass
class HandOffReport:
    """What one release or fill did, for the metrics and the logs."""

    woken: list[Ticket] = field(default_factory=list)
    waited_seconds: list[float] = field(default_factory=list)
    cancelled: int = 0
    stale: int = 0


@dataclass
class Semaphore:
    """Counting semaphore per model over a :class:`SlotStore`, with its queue (see the module docstring)."""

    store: SlotStore
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    #: Takes tried after reclaiming expired leases, before the branch queues (others may take the
    #: freed slots first).
    attempts: int = 3
    report: HandOffReport = field(default_factory=HandOffReport)

    # -- taking ---------------------------------------------------------------------------------
    def try_take(self, model: str, holder: str, limit: int, now: float) -> Granted | None:
        """Take a slot of ``model`` for ``holder`` now, or None when all are held; idempotent by holder.

        A holder that finds its lease (its earlier take or a hand-over whose answer was lost) renews it
        (a conditional write on the value seen): a step that handed it the slot and then found its old
        wake-up dead gives back, or passes on, only the lease it wrote (conditional on that value), so it
        can no longer take the slot from under a branch that is calling its model. A take that DynamoDB
        throttles raises :class:`NoSlot` (the state machine asks again)."""
        reclaimed = 0
        expires = now + self.lease_seconds
        for _ in range(self.attempts):
            taken = _unthrottled(model, functools.partial(self.store.take, model, holder, limit, expires))
            if isinstance(taken, Taken):
                return Granted(holder, taken.in_use, reclaimed, expires)
            decision = decide(taken, holder, limit, now)
            if decision.verdict == "held":
                seen = taken.leases[holder]
                if seen == expires or _unthrottled(
                    model, functools.partial(self.store.renew, model, holder, seen, expires)
                ):
                    return Granted(holder, None, reclaimed, expires)
                continue  # given back or passed on meanwhile: take again
            if decision.verdict == "wait":
                return None
            for dead, expiry in _first(decision.expired, RECLAIMS_PER_STEP):
                reclaimed += _unthrottled(model, functools.partial(self.store.give_back, model, dead, expiry))
        return None

    def acquire(
        self,
        model: str,
        ticket: Ticket,
        limit: int,
        now: float,
        *,
        notify: Notify,
        cancelled: Cancelled,
    ) -> Granted | None:
        """Take a slot for the ticket's holder, or queue the ticket (None): its branch is then woken by
        ``notify`` when a slot is handed to it, possibly before this returns (the :meth:`fill` that
        follows the enqueue closes the race with a release that saw no ticket). A branch of a cancelled
        job (looked at only when there is no slot: a take that succeeds costs nothing more) is woken at
        once with ``cancelled`` and holds no slot (None too)."""
        granted = self.try_take(model, ticket.holder, limit, now)
        if granted is not None:
            return granted
        if cancelled(ticket.execution):
            notify(ticket.token, cancelled_output(ticket))
            self.report.cancelled += 1
            return None
        _unthrottled(model, functools.partial(self.store.enqueue, model, ticket))
        self.fill(model, limit, now, notify=notify, cancelled=cancelled)
        return None

    def sweep(
        self,
        model: str,
        limit: int,
        now: float,
        *,
        notify: Notify,
        cancelled: Cancelled,
        tickets: int = SWEEP_TICKETS,
    ) -> None:
        """The keeper's round (a schedule, every minute), in three parts, each bounded so a round's time is
        (``time_budget.admission_sweep_bound``; the next round goes on):

        * reclaim expired leases (at most :data:`SWEEP_RECLAIMS`), whether or not a branch waits: a branch
          that died holding a slot sends no release, and a lease left counted makes the model look full
          and every write to its item dearer; then hand free slots to waiting tickets (``fill``);
        * drop tickets whose branch stopped waiting (at most :data:`SWEEP_DROPS`): a waiting branch asks
          again within its state's ``TimeoutSeconds`` (:data:`WAIT_SECONDS`), renewing its ticket, so a
          ticket older than :data:`STALE_TICKET_SECONDS` belongs to an execution that ended (stopped,
          timed out) and would cost a later hand-off a claim, a hand-over and a wake-up in vain;
        * wake the cancelled jobs' tickets among the oldest ``tickets`` (at most :data:`SWEEP_LOOKUPS`
          jobs looked up, :data:`SWEEP_WAKES` tickets woken; a hand-off that reaches a cancelled ticket
          wakes it too);
        * recount the queue into its waiting counter (the metric and the synchronous routes' estimate
          read it; an update lost beside a claim or an enqueue would otherwise stay for good)."""
        expired = {h: t for h, t in self.store.read(model).leases.items() if t <= now}
        for dead, expiry in _first(expired, SWEEP_RECLAIMS):
            self.store.give_back(model, dead, expiry)
        self.fill(model, limit, now, notify=notify, cancelled=cancelled)
        looked: dict[str, bool] = {}
        woken = dropped = 0
        for ticket in self.store.oldest(model, tickets):
            if now - ticket.since > STALE_TICKET_SECONDS:
                if dropped < SWEEP_DROPS and self.store.claim(model, ticket):
                    self.report.stale += 1
                    dropped += 1
                continue
            if ticket.execution not in looked:
                if len(looked) == SWEEP_LOOKUPS:
                    break
                looked[ticket.execution] = cancelled(ticket.execution)
            if looked[ticket.execution] and woken < SWEEP_WAKES and self.store.claim(model, ticket):
                notify(ticket.token, cancelled_output(ticket))
                self.report.cancelled += 1
                woken += 1
        self.store.recount(model)  # the waiting counter, made true again once a round

    def forget(
        self,
        model: str,
        execution: str,
        limit: int,
        now: float,
        *,
        notify: Notify,
        cancelled: Cancelled,
    ) -> int:
        """An execution has ended without its branches' releases (stopped, timed out, failed: Step
        Functions' status-change event, ``stacks/admission.py``): give back its leases on ``model``
        (each conditional on the expiry read) and drop its tickets, then hand the freed slots to the
        queue. Its slots come back at once instead of when their leases expire (up to 30 minutes).

        A model call already in flight when its execution was stopped goes on (Step Functions does not
        stop a running Lambda invocation) after its slot was given back: at most that stopped branch's
        one call over the limit, for the rest of that call. The number of leases given back."""
        prefix = execution + "#"
        leases = {h: t for h, t in self.store.read(model).leases.items() if h.startswith(prefix)}
        freed = sum(self.store.give_back(model, h, t) for h, t in _first(leases, FORGET_LEASES))
        dropped = 0
        for ticket in self.store.oldest(model, SWEEP_TICKETS):
            if ticket.execution == execution and dropped < SWEEP_DROPS and self.store.claim(model, ticket):
                self.report.stale += 1
                dropped += 1
        if freed:
            self.fill(model, limit, now, notify=notify, cancelled=cancelled)
        return freed

    # -- giving back ----------------------------------------------------------------------------
    def release(
        self,
        model: str,
        holder: str,
        limit: int,
        now: float,
        *,
        notify: Notify,
        cancelled: Cancelled,
        fill: bool = True,
        tickets: int = HAND_OFF_TICKETS,
        expected: float | None = None,
    ) -> bool:
        """Give ``holder``'s slot to the oldest waiting branch (looking at most at ``tickets`` tickets),
        or back when none waits; then (``fill``) hand any free slot to waiting tickets. False (nothing
        changed) when the holder holds none (or, with ``expected``, not that lease): releases are
        idempotent."""
        lease = self.store.read(model).leases.get(holder)
        if expected is not None and lease != expected:  # not the lease the caller granted: not its to give
            lease = None
        held = lease is not None
        if lease is not None:
            self._pass_on(model, holder, lease, now, notify=notify, cancelled=cancelled, tickets=tickets)
        if fill:
            self.fill(model, limit, now, notify=notify, cancelled=cancelled)
        return held

    def _pass_on(
        self,
        model: str,
        giver: str,
        lease: float,
        now: float,
        *,
        notify: Notify,
        cancelled: Cancelled,
        tickets: int,
    ) -> None:
        """Hand ``giver``'s slot (its lease of expiry ``lease``) to the oldest live ticket (of the first
        ``tickets``), or give it back; each step conditional on the lease being the one it knows."""
        looked = 0
        while looked < tickets:
            page = self.store.oldest(model, tickets - looked)
            if not page:
                break
            for ticket in page:
                looked += 1
                if not self.store.claim(model, ticket):
                    continue  # another hand-off has it
                if ticket.holder == giver:  # its own old ticket (it waited again and found its slot
                    self.report.stale += 1  # held): its wait is over; DynamoDB would refuse the
                    continue  # hand-over (two paths of one update expression overlap)
                if self._cancelled(model, ticket, notify, cancelled):
                    continue
                expires = now + self.lease_seconds
                moved = self._keeping(
                    model,
                    ticket,
                    functools.partial(self.store.hand_over, model, giver, ticket.holder, expires, lease),
                )
                if moved == "giver_gone":  # reclaimed from under us: nothing to hand; the ticket goes back
                    self.store.requeue(model, ticket)
                    return
                if moved == "taker_holds":  # its branch has a slot already: wake it (a stale token fails)
                    self.report.stale += 1
                    self._wake(ticket, now, notify)
                    continue
                if self._wake(ticket, now, notify, undo=functools.partial(self._undo, model, ticket, now)):
                    return
                # its branch has gone: the slot it was handed goes on, unless the branch, asking again,
                # has found it and renewed its lease meanwhile (then the next hand-over finds no such
                # lease: giver_gone, and the branch keeps its slot)
                giver, lease = ticket.holder, expires
        self.store.give_back(model, giver, lease)

    def fill(self, model: str, limit: int, now: float, *, notify: Notify, cancelled: Cancelled) -> None:
        """Hand every free slot to the oldest waiting tickets (reclaiming expired leases first)."""
        for _ in range(HAND_OFF_TICKETS):
            tickets = self.store.oldest(model, 1)
            if not tickets:
                return
            state = self.store.read(model)
            expired = {h: t for h, t in state.leases.items() if t <= now}
            freed = sum(self.store.give_back(model, d, e) for d, e in _first(expired, RECLAIMS_PER_STEP))
            if state.in_use - freed >= limit:
                return
            ticket = tickets[0]
            if not self.store.claim(model, ticket):
                continue
            if self._cancelled(model, ticket, notify, cancelled):
                continue
            expires = now + self.lease_seconds
            taken = self._keeping(
                model, ticket, functools.partial(self.store.take, model, ticket.holder, limit, expires)
            )
            if isinstance(taken, SlotState) and ticket.holder not in taken.leases:
                self.store.requeue(model, ticket)  # a newcomer took it first: the loop reads again
                continue
            if not self._wake(ticket, now, notify, undo=functools.partial(self._undo, model, ticket, now)):
                # only the lease this take wrote: a holder that found its slot held (an old ticket,
                # its token dead) is calling its model, and keeps it
                self.store.give_back(model, ticket.holder, expires)

    # -- waking ---------------------------------------------------------------------------------
    def _keeping(self, model: str, ticket: Ticket, step: Callable[[], Any]) -> Any:
        """Run one step on a claimed ticket; if it fails, the ticket goes back to the queue first."""
        try:
            return step()
        except Exception:
            self.store.requeue(model, ticket)
            raise

    def _cancelled(self, model: str, ticket: Ticket, notify: Notify, cancelled: Cancelled) -> bool:
        """A claimed ticket of a cancelled job: its branch is woken without a slot."""
        if not self._keeping(model, ticket, functools.partial(cancelled, ticket.execution)):
            return False
        self._keeping(model, ticket, functools.partial(notify, ticket.token, cancelled_output(ticket)))
        self.report.cancelled += 1
        return True

    def _wake(
        self, ticket: Ticket, now: float, notify: Notify, undo: Callable[[], None] | None = None
    ) -> bool:
        """Tell the ticket's branch its slot is there. False when the branch no longer waits. A refusal
        (``_refused``: Step Functions did not wake the branch, e.g. throttling) undoes the hand-over
        (``undo``: the slot given back, the ticket put back) and raises, so the release is retried and
        nothing is left half done. Any other failure (an internal error, a timeout: the branch may have
        been woken and be calling its model) keeps the hand-over and raises: a branch not woken has its
        slot when its wait times out and its AcquireSlot, asked again, finds it ``held``."""
        try:
            woken = notify(ticket.token, granted_output(ticket, now))
        except Exception as exc:
            if undo is not None and _refused(exc):
                undo()
            raise
        if woken:
            self.report.woken.append(ticket)
            self.report.waited_seconds.append(max(0.0, now - ticket.since))
        else:
            self.report.stale += 1
        return woken

    def _undo(self, model: str, ticket: Ticket, now: float) -> None:
        self.store.give_back(model, ticket.holder, now + self.lease_seconds)
        self.store.requeue(model, ticket)


def _first(leases: Mapping[str, float], count: int) -> list[tuple[str, float]]:
    """The first ``count`` (holder, expiry) pairs, oldest expiry first."""
    return sorted(leases.items(), key=lambda pair: pair[1])[:count]


def _unthrottled(model: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:
        if _error_code(exc) in THROTTLING_CODES:  # not written: the state machine asks again
            raise NoSlot(f"{model}: the slots' table is throttling; asking again") from None
        raise


def _refused(exc: Exception) -> bool:
    """Whether an AWS answer says the request was refused, not carried out: an HTTP 4xx status (a
    client error such as ThrottlingException, 400). A 5xx (InternalFailure, ServiceUnavailable), a
    timeout or a dropped connection leaves it unknown
    (https://docs.aws.amazon.com/step-functions/latest/apireference/CommonErrors.html, read 2026-11-30)."""
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return isinstance(status, int) and 400 <= status < 500


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class DynamoSlotStore:
    """The slots (partition key ``model``) and the queue (``model`` and ``place``) in two DynamoDB
    tables, through the low-level client."""

    def __init__(self, client: Any, table: str, waiters_table: str = "") -> None:
        self.client = client
        self.table = table
        self.waiters_table = waiters_table

    def _key(self, model: str) -> dict[str, Any]:
        return {"model": {"S": model}}

    def take(self, model: str, holder: str, limit: int, expires: float) -> Taken | SlotState:
        try:
            response = self.client.update_item(
                TableName=self.table,
                Key=self._key(model),
                UpdateExpression="SET #count = if_not_exists(#count, :zero) + :one, #lease = :expires",
                ConditionExpression="(attribute_not_exists(#count) OR #count < :limit) AND attribute_not_exists(#lease)",
                ExpressionAttributeNames={"#count": COUNT, "#lease": LEASE_PREFIX + holder},
                ExpressionAttributeValues={
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":expires": {"N": repr(float(expires))},
                },
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except Exception as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                item = getattr(exc, "response", {}).get("Item")
                return SlotState.from_item(item) if item else self.read(model)
            raise
        return Taken(int(response["Attributes"][COUNT]["N"]))

    def give_back(self, model: str, holder: str, expected_expiry: float | None) -> bool:
        values: dict[str, Any] = {":one": {"N": "1"}}
        condition = "attribute_exists(#lease)"
        if expected_expiry is not None:
            condition = "#lease = :expected"
            values[":expected"] = {"N": repr(float(expected_expiry))}
        return self._conditional(
            TableName=self.table,
            Key=self._key(model),
            UpdateExpression="SET #count = #count - :one REMOVE #lease",
            ConditionExpression=condition,
            ExpressionAttributeNames={"#count": COUNT, "#lease": LEASE_PREFIX + holder},
            ExpressionAttributeValues=values,
        )

    def hand_over(
        self, model: str, giver: str, taker: str, expires: float, giver_expiry: float | None = None
    ) -> HandOver:
        names = {"#giver": LEASE_PREFIX + giver, "#taker": LEASE_PREFIX + taker}
        values: dict[str, Any] = {":expires": {"N": repr(float(expires))}}
        condition = "attribute_exists(#giver) AND attribute_not_exists(#taker)"
        if giver_expiry is not None:
            condition = "#giver = :giver AND attribute_not_exists(#taker)"
            values[":giver"] = {"N": repr(float(giver_expiry))}
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(model),
                UpdateExpression="SET #taker = :expires REMOVE #giver",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except Exception as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise
            item = getattr(exc, "response", {}).get("Item") or {}
            held = item.get(LEASE_PREFIX + giver)
            if held is None or (giver_expiry is not None and float(held["N"]) != float(giver_expiry)):
                return "giver_gone"
            return "taker_holds"
        return "moved"

    def renew(self, model: str, holder: str, seen: float, expires: float) -> bool:
        return self._conditional(
            TableName=self.table,
            Key=self._key(model),
            UpdateExpression="SET #lease = :expires",
            ConditionExpression="#lease = :seen",
            ExpressionAttributeNames={"#lease": LEASE_PREFIX + holder},
            ExpressionAttributeValues={
                ":seen": {"N": repr(float(seen))},
                ":expires": {"N": repr(float(expires))},
            },
        )

    def read(self, model: str) -> SlotState:
        item = self.client.get_item(TableName=self.table, Key=self._key(model), ConsistentRead=True).get(
            "Item"
        )
        return SlotState.from_item(item)

    # -- the queue ------------------------------------------------------------------------------
    def _ticket_item(self, model: str, ticket: Ticket) -> dict[str, Any]:
        return {
            QUEUE_KEY: {"S": model},
            PLACE: {"S": ticket.place},
            "holder": {"S": ticket.holder},
            "token": {"S": ticket.token},
            "since": {"N": repr(float(ticket.since))},
            "expires_at": {"N": str(int(ticket.since) + TICKET_TTL_SECONDS)},
        }

    def enqueue(self, model: str, ticket: Ticket) -> bool:
        old = self.client.put_item(
            TableName=self.waiters_table, Item=self._ticket_item(model, ticket), ReturnValues="ALL_OLD"
        ).get("Attributes")
        if old:
            return False
        self._count_waiting(model, +1)
        return True

    def oldest(self, model: str, count: int) -> list[Ticket]:
        items = self.client.query(
            TableName=self.waiters_table,
            KeyConditionExpression="#model = :model AND #place < :counter",
            ExpressionAttributeNames={"#model": QUEUE_KEY, "#place": PLACE},
            ExpressionAttributeValues={":model": {"S": model}, ":counter": {"S": WAITING_COUNTER_PLACE}},
            ConsistentRead=True,
            Limit=max(1, count),
        ).get("Items", [])
        return [
            Ticket(i["holder"]["S"], i["token"]["S"], i[PLACE]["S"], float(i["since"]["N"])) for i in items
        ]

    def claim(self, model: str, ticket: Ticket) -> bool:
        try:
            self.client.delete_item(
                TableName=self.waiters_table,
                Key={QUEUE_KEY: {"S": model}, PLACE: {"S": ticket.place}},
                ConditionExpression="#token = :token",
                ExpressionAttributeNames={"#token": "token"},
                ExpressionAttributeValues={":token": {"S": ticket.token}},
            )
        except Exception as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        self._count_waiting(model, -1)
        return True

    def requeue(self, model: str, ticket: Ticket) -> None:
        try:
            self.client.put_item(
                TableName=self.waiters_table,
                Item=self._ticket_item(model, ticket),
                ConditionExpression="attribute_not_exists(#place)",
                ExpressionAttributeNames={"#place": PLACE},
            )
        except Exception as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return  # the branch has queued again meanwhile, with a newer token
            raise
        self._count_waiting(model, +1)

    def waiting(self, model: str) -> int:
        item = self.client.get_item(
            TableName=self.waiters_table, Key={QUEUE_KEY: {"S": model}, PLACE: {"S": WAITING_COUNTER_PLACE}}
        ).get("Item")
        return max(0, int(item["count"]["N"])) if item else 0

    def recount(self, model: str) -> int | None:
        counter_key = {QUEUE_KEY: {"S": model}, PLACE: {"S": WAITING_COUNTER_PLACE}}
        before = self.client.get_item(TableName=self.waiters_table, Key=counter_key, ConsistentRead=True).get(
            "Item"
        )
        total, start = 0, None
        for _ in range(RECOUNT_PAGES):
            request: dict[str, Any] = {
                "TableName": self.waiters_table,
                "KeyConditionExpression": "#model = :model AND #place < :counter",
                "ExpressionAttributeNames": {"#model": QUEUE_KEY, "#place": PLACE},
                "ExpressionAttributeValues": {
                    ":model": {"S": model},
                    ":counter": {"S": WAITING_COUNTER_PLACE},
                },
                "Select": "COUNT",
                "ConsistentRead": True,
            }
            if start:
                request["ExclusiveStartKey"] = start
            page = self.client.query(**request)
            total += int(page.get("Count", 0))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        if start:  # longer than the pages read: the counter is left as it is
            return None
        # Only if no enqueue or claim moved the counter since it was read: their tickets may or may not be
        # in the count, and their own update would be lost under it (then the next round recounts).
        seen = before.get("count") if before else None
        condition, values = "attribute_not_exists(#count)", {":total": {"N": str(total)}}
        if seen is not None:
            condition, values[":seen"] = "#count = :seen", seen
        try:
            self.client.update_item(
                TableName=self.waiters_table,
                Key=counter_key,
                UpdateExpression="SET #count = :total",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#count": "count"},
                ExpressionAttributeValues=values,
            )
        except Exception as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        return total

    def _count_waiting(self, model: str, change: int) -> None:
        """The counter beside the tickets (the metric only: a failed update is not worth an image)."""
        try:
            self.client.update_item(
                TableName=self.waiters_table,
                Key={QUEUE_KEY: {"S": model}, PLACE: {"S": WAITING_COUNTER_PLACE}},
                UpdateExpression="ADD #count :change",
                ExpressionAttributeNames={"#count": "count"},
                ExpressionAttributeValues={":change": {"N": str(change)}},
            )
        except Exception:  # botocore's errors or any client failure: the count is a metric
            return

    def _conditional(self, **request: Any) -> bool:
        try:
            self.client.update_item(**request)
        except Exception as exc:
            if _error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True


def ticket_place(execution_start: str | None, holder: str, now: float) -> str:
    """A ticket's place in its model's queue: its execution's start time (Step Functions'
    ``$$.Execution.StartTime``, ISO 8601 in UTC), then its holder: the oldest job is served first, and
    the same branch always has the same place."""
    start = execution_start or datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
    return f"{start}#{holder}"


def release_after_call(
    semaphore: Semaphore,
    model: str,
    holder: str,
    limit: int,
    now: float,
    *,
    notify: Notify,
    cancelled: Cancelled,
    on_error: Callable[[Exception], None],
) -> bool | None:
    """Give ``holder``'s slot on right after its model call (GenerateImage, before its upload).

    True when given on, False when the holder had none (admission off for it, or already given back);
    None when it failed: ``on_error`` is told and the state machine's ``ReleaseSlot`` (which runs after
    GenerateImage either way) does it, or the lease expires. Never raises, so a DynamoDB hiccup cannot
    fail an image the model has already made. A slot is never counted twice: the later ``ReleaseSlot``
    finds no lease and only fills free slots.
    """
    try:
        return semaphore.release(
            model,
            holder,
            limit,
            now,
            notify=notify,
            cancelled=cancelled,
            fill=False,
            tickets=EARLY_HAND_OFF_TICKETS,
        )
    except Exception as exc:  # botocore's errors, or any client failure: ReleaseSlot is the safety net
        on_error(exc)
        return None


def quota_of(model: str, configured: Mapping[str, int]) -> int:
    """The calls in flight allowed for ``model``: configured, or the conservative default of its
    documented requests-per-minute quota (``models/model_facts.json``)."""
    if model in configured:
        return configured[model]
    return default_quota(model_facts(model).quota.default_requests_per_minute)


@dataclass(frozen=True)
class QueueEstimate:
    """How long a new request of ``images`` images would wait for its model (the synchronous routes
    look before they wait, issue 15): ``ahead`` images already wait in the model's queue, ``limit``
    calls run at once, each call taken to last ``seconds_per_call``. The request's last image starts
    after ``rounds`` turns of the model's slots: ``ceil((ahead + images) / limit)``, ``seconds`` in all
    (a whole number: it is the answer's ``Retry-After``).

    An estimate, not a promise: the calls in flight and the branches not yet at ``AcquireSlot`` are not
    counted, a cached image calls no model, and a call lasts what the model takes
    (:data:`SECONDS_PER_CALL_ASSUMED`, the figure the default quotas assume; no latency was measured)."""

    model: str
    ahead: int
    images: int
    limit: int
    seconds_per_call: float = SECONDS_PER_CALL_ASSUMED

    @property
    def rounds(self) -> int:
        return math.ceil((self.ahead + self.images) / self.limit)

    @property
    def seconds(self) -> int:
        return math.ceil(self.rounds * self.seconds_per_call)

    def outlasts(self, wait_seconds: float) -> bool:
        """Whether the request would still be queued when a wait of ``wait_seconds`` ends: images wait
        ahead of it and the estimate is longer. With no queue it is never so: the request's own images
        start at once, and a route that refused them would refuse them on every try."""
        return self.ahead > 0 and self.seconds > wait_seconds

    def document(self) -> dict[str, int]:
        """What an answer says of the queue: ``{"ahead": images waiting, "estimated_seconds": ...}``."""
        return {"ahead": self.ahead, "estimated_seconds": self.seconds}


def estimate_queue(
    model: str, ahead: int, images: int, limit: int, *, seconds_per_call: float = SECONDS_PER_CALL_ASSUMED
) -> QueueEstimate:
    """The :class:`QueueEstimate` of a request of ``images`` images behind ``ahead`` waiting ones, for
    a model that runs ``limit`` calls at once (pure). A counter read below zero counts as no queue."""
    if limit < 1:
        raise InvalidQuota(f"{model}: a quota of {limit} would never let a call through")
    if images < 1:
        raise ValueError(f"{model}: a request of {images} images waits for nothing")
    if not seconds_per_call > 0:
        raise ValueError(f"{model}: a call of {seconds_per_call} s")
    return QueueEstimate(model, max(0, ahead), images, limit, seconds_per_call)


def holder_id(execution_name: str, index: int) -> str:
    """The holder of one Map branch: its execution and image, the same on every retry of the branch."""
    return f"{execution_name}#{index}"
