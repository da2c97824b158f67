"""Admission control's slots and queue in memory: the :class:`~image_pipeline.core.admission.SlotStore`
of the simulation (``benchmarks/simulation.py``), with the DynamoDB store's conditions written out in Python.

The simulation runs the very :class:`~image_pipeline.core.admission.Semaphore` (and its
:func:`~image_pipeline.core.admission.decide`) the Admission function runs; only the store differs.
``tests/unit/test_memory_slots.py`` replays the same operations on this store and on
:class:`~image_pipeline.core.admission.DynamoSlotStore` (moto) and requires the same answers.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from image_pipeline.core.admission import HandOver, SlotState, Taken, Ticket


@dataclass
class _Item:
    in_use: int = 0
    leases: dict[str, float] = field(default_factory=dict)

    def state(self) -> SlotState:
        return SlotState(self.in_use, dict(self.leases))


class MemorySlotStore:
    """One item per model and one queue per model; every method is one atomic step (the simulation is
    single-threaded). ``writes`` and ``reads`` count the requests each would be in DynamoDB."""

    def __init__(self) -> None:
        self.items: dict[str, _Item] = {}
        self.queues: dict[str, dict[str, Ticket]] = {}
        self.places: dict[str, list[str]] = {}  # each queue's places, sorted (DynamoDB's sort key)
        self.writes = 0  # write requests to the slots' items (conditional ones that failed included)
        self.reads = 0
        self.queue_writes = 0  # write requests to the waiters' table (tickets and their counter)
        self.queue_reads = 0

    def _item(self, model: str) -> _Item:
        return self.items.setdefault(model, _Item())

    def _queue(self, model: str) -> dict[str, Ticket]:
        return self.queues.setdefault(model, {})

    def _put(self, model: str, ticket: Ticket) -> None:
        queue = self._queue(model)
        if ticket.place not in queue:
            bisect.insort(self.places.setdefault(model, []), ticket.place)
        queue[ticket.place] = ticket

    def _delete(self, model: str, place: str) -> None:
        del self._queue(model)[place]
        places = self.places[model]
        del places[bisect.bisect_left(places, place)]

    def take(self, model: str, holder: str, limit: int, expires: float) -> Taken | SlotState:
        self.writes += 1
        item = self._item(model)
        if item.in_use >= limit or holder in item.leases:
            return item.state()
        item.in_use += 1
        item.leases[holder] = expires
        return Taken(item.in_use)

    def give_back(self, model: str, holder: str, expected_expiry: float | None) -> bool:
        self.writes += 1
        item = self._item(model)
        lease = item.leases.get(holder)
        if lease is None or (expected_expiry is not None and lease != expected_expiry):
            return False
        del item.leases[holder]
        item.in_use -= 1
        return True

    def hand_over(
        self, model: str, giver: str, taker: str, expires: float, giver_expiry: float | None = None
    ) -> HandOver:
        self.writes += 1
        item = self._item(model)
        held = item.leases.get(giver)
        if held is None or (giver_expiry is not None and held != giver_expiry):
            return "giver_gone"
        if taker in item.leases:
            return "taker_holds"
        del item.leases[giver]
        item.leases[taker] = expires
        return "moved"

    def renew(self, model: str, holder: str, seen: float, expires: float) -> bool:
        self.writes += 1
        item = self._item(model)
        if item.leases.get(holder) != seen:
            return False
        item.leases[holder] = expires
        return True

    def read(self, model: str) -> SlotState:
        self.reads += 1
        return self._item(model).state()

    def enqueue(self, model: str, ticket: Ticket) -> bool:
        queue = self._queue(model)
        new = ticket.place not in queue
        self.queue_writes += 1 + new  # the ticket, and the counter when it is a first wait
        self._put(model, ticket)
        return new

    def oldest(self, model: str, count: int) -> list[Ticket]:
        self.queue_reads += 1
        queue = self._queue(model)
        return [queue[place] for place in self.places.get(model, [])[: max(1, count)]]

    def claim(self, model: str, ticket: Ticket) -> bool:
        self.queue_writes += 1
        queue = self._queue(model)
        held = queue.get(ticket.place)
        if held is None or held.token != ticket.token:
            return False
        self._delete(model, ticket.place)
        self.queue_writes += 1  # the counter
        return True

    def requeue(self, model: str, ticket: Ticket) -> None:
        self.queue_writes += 1
        queue = self._queue(model)
        if ticket.place in queue:
            return
        self._put(model, ticket)
        self.queue_writes += 1

    def waiting(self, model: str) -> int:
        self.queue_reads += 1
        return len(self._queue(model))

    def recount(self, model: str) -> int | None:
        """The counter here is the queue's length itself: a COUNT query and the counter's write."""
        self.queue_reads += 1
        self.queue_writes += 1
        return len(self._queue(model))
