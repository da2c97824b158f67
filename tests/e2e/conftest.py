"""End-to-end fixtures: the local API server (uvicorn on a free port, real HTTP) over the session's
offline engine (``tests/conftest.py``), and an HTTP client of it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

WEB_DIR = Path(__file__).resolve().parents[2] / "web"


class LocalServer(NamedTuple):
    """A running local API: its base URL (no trailing slash) and the engine behind it."""

    url: str
    engine: Any


def count_executions(engine: Any) -> int:
    """Executions started so far on the engine's state machines."""
    return int(engine.count_executions())


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


@pytest.fixture(scope="session")
def local_server(offline_engine: Any) -> Iterator[LocalServer]:
    """``imagegen serve`` in a thread: the app of ``imagegen.runtime.local_api`` with the web page at ``/``."""
    from imagegen.runtime.local_api import create_app

    app = create_app(offline_engine, web_dir=WEB_DIR if WEB_DIR.is_dir() else None)
    with serve(app) as url:
        yield LocalServer(url, offline_engine)


@pytest.fixture
def api(local_server: LocalServer, engine: Any) -> Iterator[httpx.Client]:
    """An HTTP client of the local server; the engine has no faults at the start of each test."""
    with httpx.Client(base_url=local_server.url, timeout=120) as client:
        yield client
