"""DynamoDB's conditional writes made atomic in moto 5.2.5, entered and left with the offline engine.

DynamoDB applies each ``UpdateItem`` (its condition and its change) atomically: two conditional writes
of one item never both pass on the same old value. moto's ``DynamoDBBackend.update_item`` reads the
item, checks the condition and writes, with no lock, so two of the engine's threads (two Map
branches taking the last slot of a model, ``image_pipeline.core.admission``) could both pass it.
:func:`atomic_writes` holds one lock around moto's ``update_item``, ``put_item`` and ``delete_item``
while the engine runs, which is what DynamoDB guarantees per item (and more: all items wait on one
lock, which offline costs microseconds). It checks moto's version and that the methods are moto's
own, and puts them back when left.

The same lock is held around the whole request of those writes and of ``get_item`` and ``query`` in
moto's ``DynamoHandler``: its ``update_item`` copies the item *before* the backend's write and derives
``ReturnValues="UPDATED_NEW"`` from the difference, so a write by another thread in between left
out an attribute the update set (a take's ``in_use``: ``KeyError`` in ``DynamoSlotStore.take``,
found by ``tests/unit/test_admission.py``'s branches at once), and a read could see half a write.
DynamoDB returns every attribute the update expression set, and reads an item whole.

Upstream: a per-table lock in moto's ``Table`` around condition and write would fix it for everyone
(a patch for moto's ``dynamodb/models/__init__.py``); delete this module when moto has one.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

MOTO_VERSION = "5.2.5"
_WRITES = ("update_item", "put_item", "delete_item")
#: The requests whose answer moto's DynamoHandler builds from the item around the backend's call.
_REQUESTS = (*_WRITES, "get_item", "query")


@contextlib.contextmanager
def atomic_writes() -> Iterator[None]:
    """While inside, moto's DynamoDB writes run one at a time (see the module docstring)."""
    installed = metadata.version("moto")
    if installed != MOTO_VERSION:
        raise RuntimeError(f"moto_atomic_writes was written for moto {MOTO_VERSION}, not {installed}")
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler

    lock = threading.RLock()
    originals: dict[tuple[type, str], Callable[..., Any]] = {
        (DynamoDBBackend, name): DynamoDBBackend.__dict__[name] for name in _WRITES
    }
    originals |= {(DynamoHandler, name): DynamoHandler.__dict__[name] for name in _REQUESTS}

    def locked(write: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(write)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return write(self, *args, **kwargs)

        return call

    for (owner, name), original in originals.items():
        setattr(owner, name, locked(original))
    try:
        yield
    finally:
        for (owner, name), original in originals.items():
            setattr(owner, name, original)
