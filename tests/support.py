"""Helpers the suites share, imported as ``from tests.support import ...`` (fixtures stay in conftest.py).

Canonical inputs (``tests/events/*.json``), emptying a bucket inside the session's mock, counting the
executions an engine started, and serving an ASGI app (the local API) on a free port.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import date
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

EVENTS = Path(__file__).parent / "events"
#: A day when every registry model was active (before Titan Image v1 became legacy on 2025-01-31; the
#: model facts file has the dates). Tests of a retired model's own limits that go through
#: ``check_request`` judge it on this day; a request today names an active model.
ALL_MODELS_ACTIVE = date(2025, 1, 1)


def load_event(name: str) -> Any:
    """A canonical input from ``tests/events/<name>.json``."""
    return json.loads((EVENTS / f"{name}.json").read_text())


def empty_bucket(s3: Any, bucket: str) -> None:
    """Remove the bucket: inside another test's live mock (the session engine), moto keeps state."""
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)


def count_executions(engine: Any) -> int:
    """Executions started so far on the engine's state machines."""
    return int(engine.count_executions())


class LocalServer(NamedTuple):
    """A running local API: its base URL (no trailing slash) and the engine behind it."""

    url: str
    engine: Any


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on a free port; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the local API server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
