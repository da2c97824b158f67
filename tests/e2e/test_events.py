"""One contract for every entry point: an ``ImageGenerationRequested`` event and a console run (plain
JSON input) end in ``ImageGenerationCompleted`` or ``ImageGenerationFailed`` like the API does."""

from __future__ import annotations

from typing import Any

import pytest
from image_pipeline.core.tenancy import events_caller

from imagegen.runtime.local_api import put_request_event
from tests.support import load_event


def events_of(engine: Any, execution_arn: str) -> list[dict[str, Any]]:
    """The events the workflow published for one execution (drains the engine's capture queue)."""
    return [e for e in engine.published_events() if e["detail"].get("execution_arn") == execution_arn]


@pytest.mark.parametrize("whole_event", [False, True], ids=["input-path-detail", "whole-event"])
def test_a_valid_request_event_completes(engine: Any, whole_event: bool) -> None:
    detail = load_event("eventbridge_request")["detail"]
    arn = put_request_event(engine, detail, source="com.example.shop", whole_event=whole_event)
    result = engine.wait(arn, timeout=60)
    assert result.status == "SUCCEEDED", result.message
    # The event's job is the caller events:<account>'s, under its namespace, both ways it arrives.
    namespace = events_caller(load_event("eventbridge_request")["account"]).namespace
    assert result.output["succeeded"] == 2 and result.output["prefix"] == f"{namespace}/events/{result.name}/"
    (event,) = events_of(engine, arn)
    assert event["detail-type"] == "ImageGenerationCompleted" and event["source"] == "imagegen"
    assert event["detail"]["request_id"] == result.name
    assert event["detail"]["manifest_key"] == result.output["manifest_key"]
    assert event["detail"]["succeeded"] == 2 and event["detail"]["status"] == "SUCCEEDED"


@pytest.mark.parametrize("whole_event", [False, True], ids=["input-path-detail", "whole-event"])
def test_an_invalid_request_event_fails_with_invalid_request(engine: Any, whole_event: bool) -> None:
    arn = put_request_event(engine, {"prompt": "a cat", "count": 99}, whole_event=whole_event)
    result = engine.wait(arn, timeout=60)
    assert (result.status, result.error) == ("FAILED", "InvalidRequest")
    assert "count" in result.message
    (event,) = events_of(engine, arn)
    assert event["detail-type"] == "ImageGenerationFailed"
    assert event["detail"]["error"] == "InvalidRequest" and "count" in event["detail"]["cause"]
    assert event["detail"]["request_id"] == result.name
    assert not [key for key in engine.list_keys() if f"/{result.name}/" in key]


def test_a_console_run_behaves_the_same(engine: Any) -> None:
    ok = engine.start_execution(load_event("request_minimal"), name="console-ok")
    bad = engine.start_execution({"prompt": "a cat", "model": "dall-e"}, name="console-bad")
    done, failed = engine.wait(ok, timeout=60), engine.wait(bad, timeout=60)
    assert done.status == "SUCCEEDED" and done.output["succeeded"] == 4
    assert (failed.status, failed.error) == ("FAILED", "InvalidRequest") and "model" in failed.message
    published = engine.published_events()
    kinds = {
        arn: [e["detail-type"] for e in published if e["detail"]["execution_arn"] == arn] for arn in (ok, bad)
    }
    assert kinds == {ok: ["ImageGenerationCompleted"], bad: ["ImageGenerationFailed"]}
