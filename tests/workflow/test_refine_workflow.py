"""Operations on a stored image through the ASL offline (issue 16): the same ValidateRequest -> Map ->
BuildManifest, one branch per image, the source passed between states as a key (never bytes), the
stand-in doing the operation on the real pixels, and each manifest entry's lineage back to the first
prompt."""

from __future__ import annotations

import io
import json
from typing import Any

from image_pipeline.core.refine import NOT_FOUND
from image_pipeline.core.tenancy import Caller, console_caller
from PIL import Image

from tests.workflow.test_workflow import assert_nothing_lost, states_entered


def _stored(engine: Any, key: str) -> Image.Image:
    data = engine.s3.get_object(Bucket=engine.config.bucket, Key=key)["Body"].read()
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _put_png(engine: Any, key: str, size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(buffer, "PNG")
    engine.s3.put_object(
        Bucket=engine.config.bucket, Key=key, Body=buffer.getvalue(), ContentType="image/png"
    )
    return key


def test_variations_fan_out_one_branch_each_with_lineage_to_the_first_prompt(engine: Any) -> None:
    first = engine.run({"prompt": "a red porsche", "count": 1, "model": "sd3-5-large", "seed": 11})
    assert first.status == "SUCCEEDED", first.message
    (source,) = first.output["images"]
    result = engine.run(
        {"source_image": source["key"], "operation": "variation", "count": 3, "strength": 0.5}
    )
    assert result.status == "SUCCEEDED", result.message
    manifest = result.output
    assert states_entered(engine, result).count("GenerateImage") == 3
    assert manifest["model"]["id"] == "sd3-5-large" and manifest["succeeded"] == 3
    assert len({image["seed"] for image in manifest["images"]}) == 3
    original = _stored(engine, source["key"])
    for image in manifest["images"]:
        assert image["lineage"] == {
            "operation": "variation",
            "source_image": source["key"],
            "source_manifest": first.output["manifest_key"],
            "style_image": None,
            "mask_image": None,
            "parameters": {"strength": 0.5},
        }
        made = _stored(engine, image["key"])
        assert made.size == original.size and made.tobytes() != original.tobytes()
        assert image["cost_usd"] == 0.08
    # The first prompt, one step back: the source's own manifest.
    back = json.loads(
        engine.s3.get_object(Bucket=engine.config.bucket, Key=first.output["manifest_key"])["Body"].read()
    )
    assert back["prompt"] == "a red porsche" and "lineage" not in back["images"][0]
    assert_nothing_lost(engine, manifest)


def test_an_upscale_passes_the_key_between_states_never_the_bytes(engine: Any) -> None:
    key = _put_png(engine, f"{console_caller().namespace}/uploads/u1/source.png", (128, 80))
    result = engine.run({"source_image": key, "operation": "upscale"})
    assert result.status == "SUCCEEDED", result.message
    (image,) = result.output["images"]
    assert (image["width"], image["height"]) == (512, 320)
    assert _stored(engine, image["key"]).size == (512, 320)
    assert image["lineage"]["operation"] == "upscale" and image["lineage"]["source_image"] == key
    history = engine.sfn.get_execution_history(executionArn=result.arn, maxResults=1000)["events"]
    texts = [json.dumps(event, default=str) for event in history]
    assert any(key in text for text in texts)
    assert not any("iVBORw0KGgo" in text for text in texts)  # no base64 PNG in any state's input or output
    assert max(len(text) for text in texts) < 20_000


def test_another_callers_source_fails_validation_and_stores_nothing(engine: Any) -> None:
    theirs = _put_png(engine, f"{Caller('apiKey', 'someone-else').namespace}/images/j/x.png", (128, 80))
    result = engine.run({"source_image": theirs, "operation": "remove-background"})
    assert result.status == "FAILED" and result.error == "InvalidRequest"
    assert f"source_image: {NOT_FOUND}" in result.message
    assert "GenerateImage" not in states_entered(engine, result)
    assert engine.list_keys(f"{console_caller().namespace}/images/{result.name}/") == []


def test_a_filtered_input_image_is_recorded_not_retried(engine: Any) -> None:
    """Stability's finish_reasons "Filter reason: input image" (the stand-in's [[fault:block-input]]):
    the branch records CONTENT_FILTERED_INPUT, never retried, and the request fails as all filtered."""
    key = _put_png(engine, f"{console_caller().namespace}/uploads/u2/source.png", (128, 80))
    calls = engine.bedrock.invocations
    raw = {"source_image": key, "operation": "search-and-replace", "search_prompt": "x", "count": 2}
    result = engine.run({**raw, "prompt": "a horse [[fault:block-input]]"})
    assert result.status == "FAILED" and result.error == "AllImagesFiltered", result.message
    assert engine.bedrock.invocations - calls == 2  # one call per branch: a filter is never retried
    manifest_key = result.message.rsplit("s3://", 1)[-1].split("/", 1)[1]
    manifest = json.loads(engine.s3.get_object(Bucket=engine.config.bucket, Key=manifest_key)["Body"].read())
    assert {i["reason_code"] for i in manifest["images"]} == {"CONTENT_FILTERED_INPUT"}
    assert {i["message"] for i in manifest["images"]} == {"Filter reason: input image"}
    assert all(i["lineage"]["source_image"] == key for i in manifest["images"])
