"""Fixtures shared by every suite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

EVENTS = Path(__file__).parent / "events"


def load_event(name: str) -> Any:
    """A canonical input from ``tests/events/<name>.json``."""
    return json.loads((EVENTS / f"{name}.json").read_text())


def empty_bucket(s3: Any, bucket: str) -> None:
    """Remove the bucket: inside another test's live mock (the session engine), moto keeps state."""
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and Region, so nothing can reach a real account."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
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
