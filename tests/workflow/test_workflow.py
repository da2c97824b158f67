"""The ASL file executed offline by moto's interpreter, with the real handlers and the local
Bedrock-protocol server: every state reached, partial success, retries, filters, named errors."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from image_pipeline.core.tenancy import console_caller, events_caller
from PIL import Image

from imagegen.runtime.engine import ExecutionResult
from imagegen.standin.bedrock_server import FaultPlan
from tests.support import load_event


def states_entered(engine: Any, result: ExecutionResult) -> list[str]:
    history = engine.sfn.get_execution_history(executionArn=result.arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]


def assert_nothing_lost(engine: Any, manifest: dict[str, Any]) -> None:
    """Every reported image exists as a PNG of the reported size; nothing else is in the folder."""
    reported = {i["key"]: i for i in manifest["images"] if i["status"] == "SUCCEEDED"}
    for key, image in reported.items():
        head = engine.s3.head_object(Bucket=manifest["bucket"], Key=key)
        assert head["ContentType"] == "image/png"
        assert head["ContentLength"] == image["size_bytes"] > 0
    stored = set(engine.list_keys(manifest["prefix"]))
    assert stored == {*reported, manifest["manifest_key"]}


def test_happy_path_reaches_every_success_state(engine: Any) -> None:
    result = engine.run(load_event("request_seed001"))
    assert result.status == "SUCCEEDED", result.message
    manifest = result.output
    assert manifest["status"] == "SUCCEEDED" and manifest["succeeded"] == 4
    entered = states_entered(engine, result)
    assert entered.count("GenerateImage") == 4
    assert {"ValidateRequest", "GenerateImages", "BuildManifest", "PublishCompleted", "Done"} <= set(entered)
    assert "RecordImageFailure" not in entered
    assert_nothing_lost(engine, manifest)
    seeds = [i["seed"] for i in manifest["images"]]
    assert len(set(seeds)) == 4
    for image in manifest["images"]:
        # A bare request is the console's: under its namespace.
        assert image["key"].startswith(f"{console_caller().namespace}/000/111/{result.name}/porsche_image-")
        data = engine.s3.get_object(Bucket=manifest["bucket"], Key=image["key"])["Body"].read()
        assert Image.open(io.BytesIO(data)).size == (image["width"], image["height"]) == (1024, 1024)
    events = engine.published_events()
    assert [e["detail-type"] for e in events] == ["ImageGenerationCompleted"]
    assert events[0]["detail"]["manifest_key"] == manifest["manifest_key"]
    assert events[0]["detail"]["succeeded"] == 4


def test_same_seed_same_images(engine: Any) -> None:
    first = engine.run({"prompt": "a red porsche", "count": 2, "seed": 99})
    second = engine.run({"prompt": "a red porsche", "count": 2, "seed": 99})
    read = lambda m: [  # noqa: E731
        engine.s3.get_object(Bucket=m["bucket"], Key=i["key"])["Body"].read() for i in m["images"]
    ]
    assert read(first.output) == read(second.output)
    assert [i["seed"] for i in first.output["images"]] == [99, 100]


def test_partial_success_keeps_the_good_images(engine: Any) -> None:
    engine.bedrock.faults = FaultPlan(block_output_seeds={501})
    result = engine.run({"prompt": "a lighthouse", "count": 4, "seed": 500, "model": "stable-image-ultra"})
    assert result.status == "SUCCEEDED", result.message
    manifest = result.output
    assert manifest["status"] == "PARTIAL"
    assert (manifest["succeeded"], manifest["filtered"], manifest["failed"]) == (3, 1, 0)
    blocked = manifest["images"][1]
    assert blocked["status"] == "FILTERED" and blocked["reason_code"] == "CONTENT_FILTERED_OUTPUT"
    assert blocked["key"] is None and "url" not in blocked
    assert_nothing_lost(engine, manifest)


def test_throttling_is_retried_by_the_state_machine(engine: Any) -> None:
    engine.bedrock.faults = FaultPlan(throttle_first=2)
    before = engine.bedrock.invocations
    result = engine.run({"prompt": "a red porsche", "count": 2})
    assert result.status == "SUCCEEDED", result.message
    assert result.output["succeeded"] == 2
    assert engine.bedrock.invocations - before == 4  # two throttled calls, retried
    assert "RecordImageFailure" not in states_entered(engine, result)


def test_persistent_throttling_is_reported_per_image(engine: Any) -> None:
    engine.bedrock.faults = FaultPlan(throttle_rate=1.0)
    before = engine.bedrock.invocations
    result = engine.run({"prompt": "a red porsche", "count": 1})
    assert (result.status, result.error) == ("FAILED", "ImagesThrottled")
    assert "THROTTLED" in result.message
    assert engine.bedrock.invocations - before == 4  # 1 call + MaxAttempts 3 in the ASL
    manifest_key = result.message.split("Manifest: s3://")[1].split("/", 1)[1]
    stored = json.loads(engine.s3.get_object(Bucket=engine.config.bucket, Key=manifest_key)["Body"].read())
    assert stored["images"][0]["reason_code"] == "THROTTLED"
    assert [e["detail"]["error"] for e in engine.published_events()] == ["ImagesThrottled"]


def test_timeout_then_success(engine: Any) -> None:
    result = engine.run({"prompt": "a red porsche [[fault:timeout=1]]", "count": 1, "seed": 3})
    assert result.status == "SUCCEEDED", result.message
    assert result.output["succeeded"] == 1


def test_content_filter_is_never_retried(engine: Any) -> None:
    engine.bedrock.faults = FaultPlan(block_prompt_terms=["forbidden"])
    before = engine.bedrock.invocations
    result = engine.run({"prompt": "a forbidden thing", "count": 3, "model": "sd3-5-large"})
    assert (result.status, result.error) == ("FAILED", "AllImagesFiltered")
    assert "CONTENT_FILTERED_INPUT x3" in result.message
    assert engine.bedrock.invocations - before == 3


def test_access_denied_is_not_retried_and_fails_the_request(engine: Any) -> None:
    engine.bedrock.faults = FaultPlan(access_denied_models={"stability.sd3-5-large-v1:0"})
    before = engine.bedrock.invocations
    result = engine.run({"prompt": "a red porsche", "count": 2, "model": "sd3-5-large"})
    assert (result.status, result.error) == ("FAILED", "ImagesFailed")
    assert "MODEL_ACCESS_DENIED x2" in result.message
    assert engine.bedrock.invocations - before == 2


def test_mixed_failures_keep_the_good_image(engine: Any) -> None:
    result = engine.run({"prompt": "mixed [[fault:denied]]", "count": 1})
    assert result.error == "ImagesFailed"
    good = engine.run({"prompt": "fine", "count": 1})
    assert good.output["status"] == "SUCCEEDED"


def test_invalid_request_fails_before_any_work(engine: Any) -> None:
    before_calls = engine.bedrock.invocations
    before_keys = set(engine.list_keys())
    result = engine.run({"prompt": "ok", "count": 0, "output_folder": "../etc"})
    assert (result.status, result.error) == ("FAILED", "InvalidRequest")
    assert "count" in result.message and "output_folder" in result.message
    assert engine.bedrock.invocations == before_calls
    assert set(engine.list_keys()) == before_keys
    entered = states_entered(engine, result)
    assert "GenerateImages" not in entered and entered[-1] == "Failed"
    events = engine.published_events()
    assert [(e["detail-type"], e["detail"]["error"]) for e in events] == [
        ("ImageGenerationFailed", "InvalidRequest")
    ]


def test_non_object_input_is_a_named_error(engine: Any) -> None:
    result = engine.run('"just a string"')
    assert (result.status, result.error) == ("FAILED", "InvalidRequest")


def test_event_and_console_inputs_behave_the_same(engine: Any) -> None:
    """Each with its own caller: the event's account (a whole event is unwrapped) and the console."""
    event = load_event("eventbridge_request")
    from_event = engine.run(event, kind="jobs")
    from_console = engine.run(event["detail"], kind="jobs")
    callers = (events_caller(event["account"]), console_caller())
    for result, caller in zip((from_event, from_console), callers, strict=True):
        assert result.status == "SUCCEEDED" and result.output["succeeded"] == 2
        assert result.output["prefix"].startswith(f"{caller.namespace}/events/")
        assert result.output["caller_namespace"] == caller.namespace


def test_standard_execution_name_is_idempotent(engine: Any) -> None:
    """Standard semantics: the same name and input while running returns the same execution;
    once it has closed, the name is taken (ExecutionAlreadyExists), and no image is generated twice."""
    engine.bedrock.faults = FaultPlan(latency_seconds=0.5)
    request = {"prompt": "once only", "count": 2}
    first = engine.start_execution(request, name="idem-key-1", kind="jobs")
    second = engine.start_execution(request, name="idem-key-1", kind="jobs")
    assert second == first
    result = engine.wait(second)
    calls = engine.bedrock.invocations
    with pytest.raises(engine.sfn.exceptions.ExecutionAlreadyExists):
        engine.start_execution(request, name="idem-key-1", kind="jobs")
    assert engine.bedrock.invocations == calls
    assert len([k for k in engine.list_keys(result.output["prefix"]) if k.endswith(".png")]) == 2


def test_forty_images_in_one_request(engine: Any) -> None:
    result = engine.run({"prompt": "a crowd", "count": 40, "aspect_ratio": "16:9"})
    assert result.status == "SUCCEEDED", result.message
    assert result.output["succeeded"] == 40
    assert_nothing_lost(engine, result.output)
