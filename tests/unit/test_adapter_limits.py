"""The adapters' limits: the documented values (tests/schemas/bedrock, transcribed from the AWS pages), and
no parameter changed silently. What a model cannot honour exactly is refused, naming the field and what
the model takes; what it accepts reaches the InvokeModel body as it was given."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from image_pipeline.contract.errors import InvalidRequest
from image_pipeline.contract.request import parse_request
from image_pipeline.core.planning import check_request, distinct_seeds, plan
from image_pipeline.core.settings import Settings
from image_pipeline.core.tenancy import console_caller
from image_pipeline.models.amazon import NOVA_STYLES, TITAN_RATIOS, TITAN_SIZES, NovaCanvas
from image_pipeline.models.base import ImageModelAdapter
from image_pipeline.models.registry import get_adapter, list_adapters
from image_pipeline.models.stability import ASPECT_RATIOS

SCHEMAS = Path(__file__).parents[1] / "schemas" / "bedrock"
AMAZON = ("titan-image-v1", "titan-image-v2", "nova-canvas")
STABILITY = ("sd3-5-large", "stable-image-core", "stable-image-ultra")


@cache
def documented(adapter: ImageModelAdapter) -> dict[str, Any]:
    """The transcribed request schema of the adapter's model."""
    name = adapter.model_id.replace(":", "_")
    return dict(json.loads((SCHEMAS / f"{name}.json").read_text(encoding="utf-8")))


def unconfirmed(schema: dict[str, Any], pointer_end: str) -> dict[str, Any]:
    """The values an ``x-unconfirmed`` patch of the schema would merge at the pointer ending so."""
    for claim in schema.get("x-unconfirmed", []):
        patches = claim["schema_patch"] or []
        for patch in patches if isinstance(patches, list) else [patches]:
            if patch["pointer"].endswith(pointer_end):
                return dict(patch["merge"])
    raise KeyError(pointer_end)


def errors_of(adapter: ImageModelAdapter, raw: dict[str, Any]) -> list[str]:
    return [str(e) for e in adapter.validate(parse_request({"prompt": "a cat", **raw}))]


def body_of(adapter: ImageModelAdapter, raw: dict[str, Any], seed: int = 7) -> dict[str, Any]:
    request = parse_request({"prompt": "a cat", **raw})
    assert adapter.validate(request) == []
    return adapter.build_body(adapter.normalize(request), seed)


# -- the documented values ----------------------------------------------------------------------------


@pytest.mark.parametrize("registry_id", STABILITY)
def test_stability_limits_are_the_documented_ones(registry_id: str) -> None:
    adapter = get_adapter(registry_id)
    props = documented(adapter)["properties"]
    assert adapter.max_seed == props["seed"]["maximum"]  # 4294967294 for SD3.5, 4294967295 for Core, Ultra
    assert adapter.prompt_max_chars == props["prompt"]["maxLength"] == 10_000
    assert adapter.negative_max_chars == props["negative_prompt"]["maxLength"]
    assert list(ASPECT_RATIOS) == props["aspect_ratio"]["enum"]
    assert "png" in props["output_format"]["enum"]
    # Documented from 0, but 0 asks for a random seed ("Default 0 (random seed)"): refused, not sent.
    assert props["seed"]["minimum"] == 0 and adapter.min_seed == 1


def test_nova_canvas_limits_are_the_documented_ones() -> None:
    nova = get_adapter("nova-canvas")
    assert isinstance(nova, NovaCanvas)
    schema = documented(nova)
    text = schema["properties"]["textToImageParams"]["properties"]
    config = schema["properties"]["imageGenerationConfig"]["properties"]
    assert nova.prompt_max_chars == text["text"]["maxLength"] == 1024
    assert nova.negative_max_chars == text["negativeText"]["maxLength"]
    assert list(NOVA_STYLES) == text["style"]["enum"]
    assert (nova.min_seed, nova.max_seed) == (config["seed"]["minimum"], config["seed"]["maximum"])
    assert (nova.cfg_min, nova.cfg_max, nova.cfg_default) == (
        config["cfgScale"]["minimum"],
        config["cfgScale"]["maximum"],
        config["cfgScale"]["default"],
    )
    (dimensions,) = [c for c in schema["x-constraints"] if c["kind"] == "dimensions"]
    assert (nova.min_side, nova.max_side, nova.side_multiple, nova.max_pixels_exclusive) == (
        dimensions["min_side"],
        dimensions["max_side"],
        dimensions["multiple_of"],
        dimensions["max_pixels_exclusive"],
    )


@pytest.mark.parametrize("registry_id", ["titan-image-v1", "titan-image-v2"])
def test_titan_limits_are_the_documented_ones(registry_id: str) -> None:
    """The ranges sit in tables the readable copies elide: the schema holds them as x-unconfirmed."""
    titan = get_adapter(registry_id)
    schema = documented(titan)
    text = schema["properties"]["textToImageParams"]["properties"]
    assert titan.prompt_max_chars == text["text"]["maxLength"] == 512
    assert titan.negative_max_chars == text["negativeText"]["maxLength"]
    seed = unconfirmed(schema, "/imageGenerationConfig/properties/seed")
    cfg = unconfirmed(schema, "/imageGenerationConfig/properties/cfgScale")
    assert (titan.min_seed, titan.max_seed) == (seed["minimum"], seed["maximum"])
    assert (titan.cfg_min, titan.cfg_max, titan.cfg_default) == (
        cfg["minimum"],
        cfg["maximum"],
        cfg["default"],
    )
    (pairs,) = [c for c in schema["x-constraints"] if c["kind"] == "allowed_pairs"]
    assert [tuple(p) for p in pairs["pairs"]] == list(TITAN_SIZES)


def test_every_limit_cites_its_page() -> None:
    for adapter in list_adapters():
        cited = (type(adapter).__doc__ or "") + (type(adapter).__mro__[1].__doc__ or "")
        assert "https://docs.aws.amazon.com/" in cited, adapter.registry_id


# -- nothing changed silently ---------------------------------------------------------------------------


@pytest.mark.parametrize("registry_id", AMAZON)
@pytest.mark.parametrize("cfg_scale", [1.0, 1.09])
def test_cfg_scale_outside_the_range_is_refused_not_clamped(registry_id: str, cfg_scale: float) -> None:
    assert errors_of(get_adapter(registry_id), {"cfg_scale": cfg_scale}) == [
        f"cfg_scale: {registry_id} takes cfg_scale from 1.1 to 10.0, not {cfg_scale}"
    ]


@pytest.mark.parametrize("registry_id", AMAZON)
@pytest.mark.parametrize("cfg_scale", [1.1, 6.55, 7.123456789, 10])
def test_cfg_scale_reaches_the_body_unrounded(registry_id: str, cfg_scale: float) -> None:
    body = body_of(get_adapter(registry_id), {"cfg_scale": cfg_scale})
    assert body["imageGenerationConfig"]["cfgScale"] == cfg_scale


def test_titan_sizes_are_not_snapped_to_the_nearest_listed_one() -> None:
    titan = get_adapter("titan-image-v2")
    (error,) = errors_of(titan, {"width": 1000, "height": 1000})
    assert error.startswith("width: titan-image-v2 takes sizes 1024x1024, 768x768") and error.endswith(
        ", not 1000x1000"
    )
    for width, height in TITAN_SIZES:
        config = body_of(titan, {"width": width, "height": height})["imageGenerationConfig"]
        assert (config["width"], config["height"]) == (width, height)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((1000, 1008), "width: nova-canvas takes widths from 320 to 4096, divisible by 16, not 1000"),
        ((320, 1600), "width: nova-canvas takes width:height from 1:4 to 4:1, not 320x1600"),
        ((2048, 2048), "width: nova-canvas takes fewer than 4,194,304 pixels (width x height), not 2048x2048 = 4,194,304"),
    ],
)  # fmt: skip
def test_nova_sizes_are_not_snapped(size: tuple[int, int], message: str) -> None:
    assert errors_of(get_adapter("nova-canvas"), {"width": size[0], "height": size[1]}) == [message]


def test_titan_aspect_ratio_is_a_listed_size_of_exactly_that_ratio_or_refused() -> None:
    titan = get_adapter("titan-image-v1")
    for ratio in TITAN_RATIOS:
        w, h = (int(x) for x in ratio.split(":"))
        config = body_of(titan, {"aspect_ratio": ratio})["imageGenerationConfig"]
        assert config["width"] * h == config["height"] * w
        assert (config["width"], config["height"]) in TITAN_SIZES
    (error,) = errors_of(titan, {"aspect_ratio": "16:9"})  # 1173x640 or 1280x768 came back before
    assert error.startswith("aspect_ratio: titan-image-v1 takes the aspect ratios of its sizes, 1:1, 2:3")
    assert error.endswith("(or width and height of one), not 16:9")


def test_nova_aspect_ratio_is_a_size_of_exactly_that_ratio_for_every_ratio_it_can_take() -> None:
    nova = get_adapter("nova-canvas")
    assert isinstance(nova, NovaCanvas)
    for w in range(1, 100):
        for h in range(1, 100):
            size = nova._size_for_aspect(f"{w}:{h}")
            if not 0.25 <= w / h <= 4:
                assert (
                    str(size) == f"aspect_ratio: nova-canvas takes aspect ratios from 1:4 to 4:1, not {w}:{h}"
                )
                continue
            assert isinstance(size, tuple), (w, h)
            assert size[0] * h == size[1] * w and nova._size_errors(*size) == [], (w, h, size)
    assert nova._size_for_aspect("16:9") == (1280, 720)
    assert nova._size_for_aspect("1:1") == (1024, 1024)


@pytest.mark.parametrize("registry_id", STABILITY)
@pytest.mark.parametrize(
    ("size", "given"),
    [
        ({"width": 1920, "height": 1080}, "a size: 1920x1080 (send aspect_ratio 16:9)"),
        ({"width": 1024, "height": 1024}, "a size: 1024x1024 (send aspect_ratio 1:1)"),
        ({"width": 1000, "height": 700}, "a size: 1000x700 (10:7 is none of those)"),
        ({"height": 512}, "a height"),
    ],
)
def test_stability_refuses_a_size_instead_of_approximating_it(
    registry_id: str, size: dict[str, int], given: str
) -> None:
    field = "width" if "width" in size else "height"
    takes = f"an aspect_ratio ({', '.join(ASPECT_RATIOS)}) and picks the size itself"
    assert errors_of(get_adapter(registry_id), size) == [f"{field}: {registry_id} takes {takes}, not {given}"]


@pytest.mark.parametrize("registry_id", STABILITY)
def test_stability_aspect_ratio_reaches_the_body_as_given(registry_id: str) -> None:
    for ratio in ASPECT_RATIOS:
        assert body_of(get_adapter(registry_id), {"aspect_ratio": ratio})["aspect_ratio"] == ratio


@pytest.mark.parametrize("registry_id", STABILITY)
def test_stability_refuses_seed_zero_which_asks_for_a_random_seed(registry_id: str) -> None:
    adapter = get_adapter(registry_id)
    assert errors_of(adapter, {"seed": 0, "count": 1}) == [
        f"seed: {registry_id} takes seeds from 1 to {adapter.max_seed} (0 asks it for a random seed: "
        "leave seed out for random seeds), not 0"
    ]
    assert body_of(adapter, {"seed": 1, "count": 1}, seed=1)["seed"] == 1


@pytest.mark.parametrize("registry_id", [a.registry_id for a in list_adapters() if a.text_to_image])
def test_seeds_are_never_wrapped_past_the_models_maximum(registry_id: str) -> None:
    adapter = get_adapter(registry_id)
    last_first = adapter.max_seed - 3
    assert errors_of(adapter, {"count": 4, "seed": last_first}) == []
    assert distinct_seeds(4, adapter.max_seed, last_first, min_seed=adapter.min_seed)[-1] == adapter.max_seed
    (error,) = errors_of(adapter, {"count": 4, "seed": last_first + 1})
    assert error == (
        f"seed: {registry_id} takes seeds from {adapter.min_seed} to {adapter.max_seed}{adapter.seed_note}; "
        f"image i gets seed+i, so with count 4 the first seed is at most {last_first}, not {last_first + 1}"
    )


@pytest.mark.parametrize("registry_id", [a.registry_id for a in list_adapters() if a.text_to_image])
def test_a_seed_above_the_models_maximum_is_refused(registry_id: str) -> None:
    adapter = get_adapter(registry_id)
    if adapter.max_seed >= 4_294_967_295:
        pytest.skip("no larger seed passes ImageRequest")
    (error,) = errors_of(adapter, {"count": 1, "seed": adapter.max_seed + 1})
    assert error.startswith(f"seed: {registry_id} takes seeds from {adapter.min_seed} to {adapter.max_seed}")


OPTIONS: list[tuple[str, Any]] = [
    ("negative_prompt", "dogs"),
    ("quality", "premium"),
    ("cfg_scale", 7.5),
    ("style", "PHOTOREALISM"),
    ("aspect_ratio", "3:2"),
    ("seed", 12_345),
]


@pytest.mark.parametrize("registry_id", [a.registry_id for a in list_adapters() if a.text_to_image])
@pytest.mark.parametrize(("field", "value"), OPTIONS, ids=[f for f, _ in OPTIONS])
def test_an_option_is_in_the_body_or_refused_never_dropped(registry_id: str, field: str, value: Any) -> None:
    adapter = get_adapter(registry_id)
    request = parse_request({"prompt": "a cat", "count": 1, field: value})
    errors = adapter.validate(request)
    if errors:
        assert [e.field for e in errors] == [field]
        assert errors[0].message.startswith(f"{registry_id} takes ")
        return
    body = adapter.build_body(adapter.normalize(request), seed=request.seed or 1)
    flat = json.dumps(body)
    if field == "aspect_ratio" and registry_id in AMAZON:
        config = body["imageGenerationConfig"]
        assert config["width"] * 2 == config["height"] * 3
    else:
        assert json.dumps(value) in flat, (field, body)


@pytest.mark.parametrize("registry_id", ["titan-image-v1", "stable-image-core"])
def test_options_a_model_does_not_have_are_refused_by_name(registry_id: str) -> None:
    raw = {"style": "PHOTOREALISM"} if registry_id.startswith("titan") else {"quality": "premium"}
    (field,) = raw
    assert errors_of(get_adapter(registry_id), raw) == [
        f"{field}: {registry_id} takes no {field}; leave it out"
    ]


def test_count_is_count_calls_of_one_image_with_seed_plus_i() -> None:
    """Not a change: the contract's count is images, one model call each, image i with seed+i."""
    raw = {"prompt": "ok", "model": "sd3-5-large", "count": 5, "seed": 100}
    planned = plan(check_request(raw, Settings(images_bucket="b")), "r-1", caller=console_caller())
    assert [i["seed"] for i in planned["images"]] == [100, 101, 102, 103, 104]
    nova = get_adapter("nova-canvas")
    assert body_of(nova, {"count": 5})["imageGenerationConfig"]["numberOfImages"] == 1


def test_random_seeds_start_at_the_models_minimum() -> None:
    raw = {"prompt": "ok", "model": "stable-image-core", "count": 40}
    for request_id in ("a", "b", "c"):
        planned = plan(check_request(raw, Settings(images_bucket="b")), request_id, caller=console_caller())
        assert all(1 <= i["seed"] <= 4_294_967_295 for i in planned["images"])


def test_the_refusals_reach_check_request() -> None:
    with pytest.raises(InvalidRequest, match="send aspect_ratio 16:9"):
        check_request(
            {"prompt": "ok", "width": 1920, "height": 1080}, Settings(default_model="stable-image-core")
        )
