"""Fixtures shared by every suite: fake credentials, the session's offline engine, and the local API
server over it (e2e and reliability). Helpers are in ``tests/support.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import LocalServer, serve

WEB_DIR = Path(__file__).resolve().parents[1] / "web"


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and Region, so nothing can reach a real account. The Region is one where the
    default model is offered (the handlers read AWS_REGION to judge a model "offered here")."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_REGION": "us-west-2",
    }.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def offline_engine() -> Iterator[Any]:
    """One offline engine for the whole test session (moto's mock is process-wide).

    Configured for tests: botocore makes a single attempt per call, so the state machine's own
    Retry policy is what a test observes.
    """
    from imagegen.runtime.engine import EngineConfig, OfflineEngine

    with OfflineEngine(EngineConfig(bedrock_max_attempts=1, map_max_concurrency=40)) as engine:
        yield engine


@pytest.fixture
def engine(offline_engine: Any) -> Iterator[Any]:
    """The session engine with no faults and no pending events at the start of a test."""
    from imagegen.standin.bedrock_server import FaultPlan

    offline_engine.bedrock.faults = FaultPlan()
    offline_engine.published_events()
    yield offline_engine
    offline_engine.bedrock.faults = FaultPlan()


@pytest.fixture(scope="session")
def local_server(offline_engine: Any) -> Iterator[LocalServer]:
    """``imagegen serve`` in a thread (uvicorn on a free port, real HTTP): the app of
    ``imagegen.runtime.local_api`` over the session's engine, with the web page at ``/``."""
    from imagegen.runtime.local_api import create_app

    app = create_app(offline_engine, web_dir=WEB_DIR if WEB_DIR.is_dir() else None)
    with serve(app) as url:
        yield LocalServer(url, offline_engine)


@pytest.fixture
def api(local_server: LocalServer, engine: Any) -> Iterator[httpx.Client]:
    """An HTTP client of the local server; the engine has no faults at the start of each test."""
    with httpx.Client(base_url=local_server.url, timeout=120) as client:
        yield client
