"""Admission control's slots in memory: the :class:`~image_pipeline.core.admission.SlotStore` of the
simulation (``benchmarks/simulation.py``), with the DynamoDB store's conditions written out in Python.

The simulation runs the very :class:`~image_pipeline.core.admission.Semaphore` (and its
:func:`~image_pipeline.core.admission.decide`) the Admission function runs; only the store differs.
``tests/unit/test_memory_slots.py`` replays the same operations on this store and on
:class:`~image_pipeline.core.admission.DynamoSlotStore` (moto) and requires the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from image_pipeline.core.admission import SlotState, Taken


@dataclass
class _Item:
    in_use: int = 0
    leases: dict[str, float] = field(default_factory=dict)
    waiting: dict[str, float] = field(default_factory=dict)

    def state(self) -> SlotState:
        return SlotState(self.in_use, dict(self.leases), dict(self.waiting))


class MemorySlotStore:
    """One item per model; every method is one atomic step (the simulation is single-threaded)."""

    def __init__(self) -> None:
        self.items: dict[str, _Item] = {}
        self.writes = 0  # conditional writes attempted (each one a DynamoDB write request)
        self.reads = 0

    def _item(self, model: str) -> _Item:
        return self.items.setdefault(model, _Item())

    def take(self, model: str, holder: str, limit: int, expires: float) -> Taken | SlotState:
        self.writes += 1
        item = self._item(model)
        if item.in_use >= limit or holder in item.leases:
            return item.state()
        item.in_use += 1
        item.leases[holder] = expires
        return Taken(item.in_use, item.waiting.pop(holder, None))

    def give_back(self, model: str, holder: str, expected_expiry: float | None) -> bool:
        self.writes += 1
        item = self._item(model)
        lease = item.leases.get(holder)
        if lease is None or (expected_expiry is not None and lease != expected_expiry):
            if expected_expiry is None:
                item.waiting.pop(holder, None)
            return False
        del item.leases[holder]
        item.in_use -= 1
        item.waiting.pop(holder, None)
        return True

    def read(self, model: str) -> SlotState:
        self.reads += 1
        return self._item(model).state()

    def note_waiting(self, model: str, holder: str, now: float, forget: tuple[str, ...]) -> None:
        self.writes += 1
        item = self._item(model)
        item.waiting.setdefault(holder, now)
        for gone in forget:
            item.waiting.pop(gone, None)
