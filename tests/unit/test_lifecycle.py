"""A request against the model facts: refused past end of life or out of Region, warned when legacy;
the warning reaches the plan and the manifest; GET /models says what each model is worth today; a
model reached through an inference profile is invoked with the profile id."""

from __future__ import annotations

import json
from datetime import date
from typing import Any, ClassVar

import pytest
from image_pipeline.contract.errors import AllImagesFiltered, InvalidRequest
from image_pipeline.core import generation
from image_pipeline.core.generation import generate_image
from image_pipeline.core.jobs import model_catalog
from image_pipeline.core.planning import check_request, plan
from image_pipeline.core.settings import Settings, handler_environment
from image_pipeline.core.tenancy import Caller
from image_pipeline.models.stability import StableImageCore

CALLER = Caller("apiKey", "k1a2b3c4d5")
US_EAST_1 = Settings(images_bucket="images", region="us-east-1")
US_WEST_2 = Settings(images_bucket="images", region="us-west-2")
NOVA_LEGACY = date(2026, 5, 1)  # Nova Canvas: legacy 2026-03-30, end of life 2026-09-30
TODAY = date(2026, 11, 30)


def refusal(raw: dict[str, Any], settings: Settings, today: date) -> str:
    with pytest.raises(InvalidRequest) as info:
        check_request(raw, settings, today=today)
    [message] = [e.message for e in info.value.errors if e.field == "model"]
    return message


def test_a_model_past_its_end_of_life_is_refused_with_the_date_and_what_to_use() -> None:
    message = refusal({"prompt": "ok", "model": "titan-image-v2"}, US_WEST_2, TODAY)
    assert (
        "titan-image-v2 (amazon.titan-image-generator-v2:0) reached its end of life on 2026-06-30" in message
    )
    assert "model-card-amazon-titan-image-generator-g1-v2.html" in message
    assert message.endswith("use sd3-5-large, stable-image-core or stable-image-ultra instead")


def test_the_alternatives_are_the_deployment_s_allowed_models() -> None:
    settings = US_WEST_2.model_copy(update={"allowed_models": ("titan-image-v2", "stable-image-ultra")})
    message = refusal({"prompt": "ok", "model": "titan-image-v2"}, settings, TODAY)
    assert message.endswith("use stable-image-ultra instead")


def test_the_end_of_life_is_judged_on_the_day_given() -> None:
    checked = check_request({"prompt": "ok", "model": "titan-image-v2"}, US_WEST_2, today=date(2025, 6, 1))
    assert checked.warnings == ()  # active then
    refusal({"prompt": "ok", "model": "titan-image-v2"}, US_WEST_2, date(2026, 6, 30))  # its last day passed


def test_the_default_model_is_judged_too() -> None:
    settings = US_WEST_2.model_copy(update={"default_model": "titan-image-v1"})
    assert "reached its end of life on 2025-08-15" in refusal({"prompt": "ok"}, settings, TODAY)


def test_a_model_not_offered_in_the_region_is_refused_with_where_it_is() -> None:
    message = refusal({"prompt": "ok", "model": "stable-image-core"}, US_EAST_1, TODAY)
    assert "stable-image-core (stability.stable-image-core-v1:1) is not offered in us-east-1" in message
    assert "Bedrock offers it in us-west-2" in message and "deploy in us-west-2" in message


def test_the_model_problem_comes_with_the_request_s_other_problems() -> None:
    with pytest.raises(InvalidRequest) as info:
        check_request({"prompt": "ok", "model": "nova-canvas", "width": 1000, "height": 1000}, US_WEST_2)
    assert {"model", "width"} <= {e.field for e in info.value.errors}


def test_a_legacy_model_is_served_with_a_warning_in_the_plan() -> None:
    checked = check_request({"prompt": "ok", "model": "nova-canvas"}, US_EAST_1, today=NOVA_LEGACY)
    [warning] = checked.warnings
    assert "nova-canvas (amazon.nova-canvas-v1:0) is legacy since 2026-03-30" in warning
    assert "its end of life is 2026-09-30" in warning
    assert plan(checked, "req-1", caller=CALLER)["warnings"] == [warning]


def test_an_active_model_has_no_warning() -> None:
    checked = check_request({"prompt": "ok"}, US_WEST_2, today=TODAY)
    assert checked.warnings == () and plan(checked, "req-1", caller=CALLER)["warnings"] == []


def test_no_region_no_region_check() -> None:
    assert check_request({"prompt": "ok"}, Settings(), today=TODAY).adapter.registry_id == "stable-image-core"


def test_the_region_is_read_from_aws_region_and_never_written() -> None:
    assert Settings.from_environ({"AWS_REGION": "eu-west-1"}).region == "eu-west-1"
    environment = handler_environment(US_WEST_2, log_level="INFO")
    assert "AWS_REGION" not in environment and environment["IMAGES_BUCKET"] == "images"


def test_the_catalog_says_what_each_model_is_worth_here_today() -> None:
    catalog = model_catalog(US_WEST_2, today=TODAY)
    assert (catalog["region"], catalog["as_of"]) == ("us-west-2", "2026-11-30")
    by_id = {m["id"]: m for m in catalog["models"]}
    core = by_id["stable-image-core"]
    assert (core["lifecycle"], core["available"], core["invoke_id"]) == (
        "active",
        True,
        "stability.stable-image-core-v1:1",
    )
    assert core["regions"] == ["us-west-2"] and core["lifecycle_note"] is None
    titan = by_id["titan-image-v2"]
    assert titan["enabled"] and not titan["available"] and titan["lifecycle"] == "eol"
    assert "reached its end of life on 2026-06-30" in titan["lifecycle_note"]
    nova = model_catalog(US_EAST_1, today=NOVA_LEGACY)["models"]
    [legacy] = [m for m in nova if m["id"] == "nova-canvas"]
    assert (
        legacy["lifecycle"] == "legacy" and legacy["available"] and "legacy since" in legacy["lifecycle_note"]
    )


# -- invoked by the inference profile id where the facts say so --------------------------------------


class StableImageInpaint(StableImageCore):
    """An adapter for one of the Stability image services, which Bedrock serves only through the
    ``us.`` inference profile: its facts are the shipped file's."""

    registry_id: ClassVar[str] = "stable-image-inpaint-test"
    model_id: ClassVar[str] = "stability.stable-image-inpaint-v1:0"


class RecordingBedrock:
    def __init__(self) -> None:
        self.model_ids: list[str] = []

    def invoke_model(self, **kwargs: Any) -> dict[str, Any]:
        self.model_ids.append(kwargs["modelId"])
        raise generation.ClientError(
            {"Error": {"Code": "ValidationException", "Message": "blocked by our content filters"}},
            "InvokeModel",
        )


@pytest.mark.parametrize("region", ["us-east-1", "us-east-2", "us-west-2"])
def test_a_profile_only_model_is_invoked_with_the_profile_id(region: str) -> None:
    assert StableImageInpaint().invoke_id(region) == "us.stability.stable-image-inpaint-v1:0"


def test_an_in_region_model_is_invoked_with_its_model_id() -> None:
    assert StableImageCore().invoke_id("us-west-2") == "stability.stable-image-core-v1:1"
    assert StableImageCore().invoke_id("") == "stability.stable-image-core-v1:1"  # Region unknown


def test_generate_image_passes_the_profile_id_as_model_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generation, "get_adapter", lambda _registry_id: StableImageInpaint())
    bedrock = RecordingBedrock()
    event = {
        "request_id": "r",
        "model": "stable-image-inpaint-test",
        "request": json.loads(json.dumps({"prompt": "a cat", "aspect_ratio": "1:1"})),
        "image": {"index": 0, "seed": 1, "key": "k.png"},
    }
    record = generate_image(event, bedrock=bedrock, s3=None, bucket="b", region="us-east-2")
    assert bedrock.model_ids == ["us.stability.stable-image-inpaint-v1:0"]
    assert record["status"] == "FILTERED" and record["model_id"] == "stability.stable-image-inpaint-v1:0"


def test_the_warning_is_in_the_manifest(aws_credentials: None) -> None:
    import boto3
    from image_pipeline.core.manifest import build_manifest
    from moto import mock_aws

    checked = check_request(
        {"prompt": "ok", "model": "nova-canvas", "count": 1}, US_EAST_1, today=NOVA_LEGACY
    )
    state = plan(checked, "req-1", caller=CALLER)
    image = state["images"][0]
    state["results"] = [{"index": 0, "seed": image["seed"], "key": image["key"], "status": "FILTERED"}]
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="images")
        with pytest.raises(AllImagesFiltered):
            build_manifest(state, s3=s3, bucket="images", expires_in=60)
        stored = json.loads(s3.get_object(Bucket="images", Key=state["manifest_key"])["Body"].read())
    assert stored["warnings"] == list(checked.warnings) and stored["warnings"]
