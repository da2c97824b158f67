"""The request contract: parsing, per-model limits, planning, key naming."""

from __future__ import annotations

from typing import Any

import pytest
from image_pipeline.contract.errors import InvalidRequest
from image_pipeline.contract.request import ImageRequest, parse_request
from image_pipeline.core.execution_input import read_execution_input
from image_pipeline.core.keys import image_key, manifest_key, namespace_prefix, request_prefix
from image_pipeline.core.planning import check_request, distinct_seeds, plan
from image_pipeline.core.settings import Settings
from image_pipeline.core.tenancy import Caller, console_caller, events_caller

from imagegen.testing.bad_inputs import BAD_REQUESTS
from tests.support import ALL_MODELS_ACTIVE, load_event

#: The caller of the plans below, and the folder all its keys are in.
CALLER = Caller("apiKey", "k1a2b3c4d5")
NS = CALLER.namespace


def checked_plan(raw: Any, settings: Settings | None = None) -> dict:
    """The plan of ``raw``, checked on a day every model was active (these tests are of the adapters'
    limits; tests/unit/test_lifecycle.py checks requests against the lifecycle)."""
    checked = check_request(raw, settings or Settings(images_bucket="b"), today=ALL_MODELS_ACTIVE)
    return plan(checked, "req-1", caller=CALLER)


@pytest.mark.parametrize(
    ("raw", "field"), BAD_REQUESTS, ids=[f"{i:02d}-{f}" for i, (_, f) in enumerate(BAD_REQUESTS)]
)
def test_bad_request_names_the_field(raw: Any, field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        checked_plan(raw)
    fields = [e.field for e in info.value.errors]
    assert field in fields, info.value
    assert field in str(info.value)


def test_at_least_forty_distinct_bad_inputs() -> None:
    assert len({repr(raw) for raw, _ in BAD_REQUESTS}) >= 40


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidRequest) as info:
        checked_plan({"prompt": "", "count": 0, "output_folder": "../x"})
    assert {e.field for e in info.value.errors} == {"prompt", "count", "output_folder"}


def test_deployment_limit_on_count() -> None:
    with pytest.raises(InvalidRequest, match="count: at most 10"):
        checked_plan({"prompt": "ok", "count": 11}, Settings(max_images_per_request=10))


def test_model_not_enabled_in_deployment() -> None:
    settings = Settings(allowed_models=("stable-image-core",))
    with pytest.raises(InvalidRequest, match="nova-canvas is not enabled"):
        checked_plan({"prompt": "ok", "model": "nova-canvas"}, settings)


def test_defaults_from_configuration() -> None:
    result = checked_plan(load_event("request_minimal"), Settings(default_model="sd3-5-large"))
    assert result["model"] == "sd3-5-large"
    assert len(result["images"]) == 4
    assert result["request"]["aspect_ratio"] == "1:1"


def test_check_request_gives_the_request_its_adapter_and_settings_without_planning() -> None:
    settings = Settings(images_bucket="b")
    checked = check_request(
        {"prompt": " ok ", "model": "amazon.nova-canvas-v1:0"}, settings, today=ALL_MODELS_ACTIVE
    )
    request, adapter, checked_with = checked.request, checked.adapter, checked.settings
    assert request.prompt == "ok" and adapter.registry_id == "nova-canvas" and checked_with is settings


def test_bedrock_model_id_is_accepted_as_model() -> None:
    assert checked_plan({"prompt": "ok", "model": "amazon.nova-canvas-v1:0"})["model"] == "nova-canvas"


def test_full_request_is_planned() -> None:
    result = checked_plan(load_event("request_full"))
    assert result["model"] == "nova-canvas"
    assert result["request"] | {"prompt": None} == {
        "prompt": None,
        "negative_prompt": "blurry, text",
        "width": 1280,
        "height": 720,
        "quality": "premium",
        "cfg_scale": 7.5,
        "style": "SOFT_DIGITAL_PAINTING",
        "count": 4,
        "file_name_prefix": "lighthouse",
        "output_folder": "acct-1/project-2",
    }
    assert [i["seed"] for i in result["images"]] == [42, 43, 44, 45]
    assert [i["key"] for i in result["images"]] == [
        f"{NS}/acct-1/project-2/req-1/lighthouse-{i:02d}-{42 + i}.png" for i in range(4)
    ]
    assert result["manifest_key"] == f"{NS}/acct-1/project-2/req-1/manifest.json"
    assert result["caller_namespace"] == NS


def test_seed001_request_keeps_its_folder_and_prefix() -> None:
    result = checked_plan(load_event("request_seed001"))
    keys = [i["key"] for i in result["images"]]
    assert all(k.startswith(f"{NS}/000/111/req-1/porsche_image-") and k.endswith(".png") for k in keys)
    assert len(set(keys)) == 4


def test_trailing_slash_in_folder_is_normalized() -> None:
    assert parse_request({"prompt": "ok", "output_folder": "a/b/"}).output_folder == "a/b"


def test_prompt_is_stripped_and_empty_negative_becomes_none() -> None:
    request = parse_request({"prompt": "  hi  ", "negative_prompt": "  "})
    assert request.prompt == "hi"
    assert request.negative_prompt is None


def test_unicode_prompt_is_kept() -> None:
    assert parse_request({"prompt": "富士山と桜 🌸, café"}).prompt == "富士山と桜 🌸, café"


def test_titan_aspect_ratio_is_its_largest_listed_size_of_exactly_that_ratio() -> None:
    result = checked_plan({"prompt": "ok", "model": "titan-image-v2", "aspect_ratio": "3:2"})
    assert (result["request"]["width"], result["request"]["height"]) == (1152, 768)
    result = checked_plan({"prompt": "ok", "model": "titan-image-v2", "aspect_ratio": "2:2"})
    assert (result["request"]["width"], result["request"]["height"]) == (1024, 1024)


def test_nova_aspect_ratio_gives_a_size_of_exactly_that_ratio() -> None:
    result = checked_plan({"prompt": "ok", "model": "nova-canvas", "aspect_ratio": "16:9"})
    assert (result["request"]["width"], result["request"]["height"]) == (1280, 720)


def test_stability_takes_no_width_and_height_even_of_one_of_its_ratios() -> None:
    with pytest.raises(InvalidRequest, match="send aspect_ratio 16:9") as info:
        checked_plan({"prompt": "ok", "model": "stable-image-core", "width": 1920, "height": 1080})
    assert [e.field for e in info.value.errors] == ["width"]


@pytest.mark.parametrize(
    ("count", "max_seed", "first"),
    [(4, 10, None), (40, 100, None), (4, 2_147_483_646, 2_147_483_643), (3, 2, 0)],
)
def test_seeds_are_distinct_and_in_range(count: int, max_seed: int, first: int | None) -> None:
    seeds = distinct_seeds(count, max_seed, first)
    assert len(seeds) == count == len(set(seeds))
    assert all(0 <= s <= max_seed for s in seeds)


def test_seeds_are_never_wrapped_or_drawn_below_the_models_minimum() -> None:
    with pytest.raises(ValueError, match=r"not all in 0\.\.10"):
        distinct_seeds(3, 10, 9)
    assert distinct_seeds(3, 10, 8) == [8, 9, 10]
    assert sorted(distinct_seeds(3, 3, None, min_seed=1)) == [1, 2, 3]


def test_keys_never_collide_across_requests_images_and_callers() -> None:
    checked = check_request({"prompt": "ok", "count": 40, "seed": 7}, Settings())
    keys = {
        i["key"]
        for caller in (CALLER, Caller("apiKey", "other"), console_caller())
        for request_id in ("a", "b", "c")
        for i in plan(checked, request_id, caller=caller)["images"]
    }
    assert len(keys) == 360


def test_a_callers_keys_are_all_under_its_namespace_whatever_the_output_folder() -> None:
    other = Caller("apiKey", "someone-else").namespace
    # An output_folder that names another caller's namespace is a folder inside one's own.
    result = checked_plan({"prompt": "ok", "count": 2, "output_folder": f"{other}/images"})
    assert result["prefix"] == f"{NS}/{other}/images/req-1/"
    assert all(i["key"].startswith(namespace_prefix(NS)) for i in result["images"])


def test_key_helpers() -> None:
    prefix = request_prefix("a/b", "exec:1", namespace=NS)
    assert prefix == f"{NS}/a/b/exec-1/"
    assert image_key(prefix, "img", 3, 99) == f"{NS}/a/b/exec-1/img-03-99.png"
    assert manifest_key(prefix) == f"{NS}/a/b/exec-1/manifest.json"
    with pytest.raises(ValueError):
        request_prefix("a", "bad id/with slash", namespace=NS)
    for not_a_namespace in ("", "images", "ABCDEF012345", NS + "0", "../" + NS[3:]):
        with pytest.raises(ValueError):
            request_prefix("a", "r", namespace=not_a_namespace)


def test_event_detail_is_unwrapped_with_its_account_as_the_caller() -> None:
    event = load_event("eventbridge_request")
    read = read_execution_input(event)
    assert read.request == event["detail"] and read.caller == events_caller("123456789012")
    assert read_execution_input({"prompt": "x"}).request == {"prompt": "x"}


def test_schema_is_json_schema_with_descriptions() -> None:
    schema = ImageRequest.model_json_schema()
    assert "required" not in schema  # a prompt, or a stored image to refine:
    assert [branch["required"] for branch in schema["anyOf"]] == [["prompt"], ["source_image"], ["operation"]]
    assert schema["additionalProperties"] is False
    assert "description" in schema["properties"]["output_folder"]
