"""What a request cost (``core/cost.py``) from the one price table (``models/prices.py``)."""

from __future__ import annotations

import json

import pytest
from image_pipeline.core.cost import (
    FIXED_STATE_TRANSITIONS,
    image_cost,
    model_billed,
    request_cost,
)
from image_pipeline.models.prices import PRICES_FILE, PRICES_SOURCE, model_price_document, price_table
from image_pipeline.models.registry import list_adapters


def test_the_table_names_a_source_and_a_status_for_every_price_and_every_model_has_one() -> None:
    table = price_table()
    raw = json.loads(PRICES_FILE.read_text())
    assert table.as_of.isoformat() == raw["as_of"] and table.currency == "USD"
    for entry in [*table.services.values(), *table.models_per_image.values()]:
        assert entry.status in {"confirmed", "verify"} and entry.source.startswith("https://")
    for adapter in list_adapters():
        priced = model_price_document(adapter.registry_id)
        assert priced is not None and priced["usd_per_image"] > 0, adapter.registry_id
        assert table.models_per_image[priced["entry"]].model_id == adapter.model_id  # type: ignore[index]


def test_premium_is_priced_apart_where_the_table_does() -> None:
    standard = model_price_document("nova-canvas")
    premium = model_price_document("nova-canvas", "premium")
    assert standard is not None and premium is not None
    assert (standard["entry"], premium["entry"]) == ("nova-canvas", "nova-canvas-premium")
    assert premium["usd_per_image"] > standard["usd_per_image"]  # type: ignore[operator]
    assert model_price_document("stable-image-core", "premium")["entry"] == "stable-image-core"  # type: ignore[index]
    assert model_price_document("no-such-model") is None


IMAGES = [
    {"index": 0, "status": "SUCCEEDED", "reason_code": None},
    {"index": 1, "status": "SUCCEEDED", "reason_code": None},
    {"index": 2, "status": "FILTERED", "reason_code": "CONTENT_FILTERED_OUTPUT"},
    {"index": 3, "status": "FILTERED", "reason_code": "CONTENT_FILTERED_INPUT"},
    {"index": 4, "status": "FAILED", "reason_code": "THROTTLED"},
    {"index": 5, "status": "FAILED", "reason_code": "CANCELLED"},
]


def test_the_model_is_paid_for_every_image_it_made() -> None:
    assert [model_billed(i) for i in IMAGES] == [True, True, True, False, False, False]
    assert [image_cost(i, 0.04) for i in IMAGES] == [0.04, 0.04, 0.04, 0.0, 0.0, 0.0]
    assert image_cost(IMAGES[0], None) is None


def test_a_request_cost_has_the_model_and_the_workflow_with_the_tables_reference() -> None:
    results = {i: {"model_latency_ms": 10_000} for i in range(3)}
    cost = request_cost(IMAGES, results, registry_id="stable-image-core", quality=None)
    table = price_table()
    price = table.models_per_image["stable-image-core"].price
    assert cost["model_usd"] == pytest.approx(3 * price)
    workflow = cost["workflow_estimate_usd"]
    parts = {k: v for k, v in workflow.items() if k != "total"}
    assert set(parts) == {"step_functions", "lambda", "s3", "eventbridge"} and all(
        v > 0 for v in parts.values()
    )
    assert workflow["total"] == pytest.approx(sum(parts.values()))
    transitions = len(IMAGES) + FIXED_STATE_TRANSITIONS
    assert workflow["step_functions"] == pytest.approx(
        transitions * table.service("stepfunctions_standard_per_state_transition")
    )
    # 30 s of model time at 512 MB dominate the Lambda part: about half a tenth of a cent.
    assert 0.0002 < workflow["lambda"] < 0.0005
    assert cost["total_usd"] == pytest.approx(cost["model_usd"] + workflow["total"])
    assert cost["prices"] == {
        "as_of": table.as_of.isoformat(),
        "source": PRICES_SOURCE,
        "region": table.region,
        "currency": "USD",
    }
    assert cost["model_price"]["entry"] == "stable-image-core"
    # The workflow around the model is a small share of it (the 2 % line of docs/performance.md).
    assert workflow["total"] / cost["model_usd"] < 0.02


def test_a_model_the_table_does_not_price_has_no_model_cost_but_an_estimate() -> None:
    cost = request_cost(IMAGES[:1], {}, registry_id="no-such-model", quality=None)
    assert cost["model_usd"] is None and cost["total_usd"] is None and cost["model_price"] is None
    assert cost["workflow_estimate_usd"]["total"] > 0


def test_the_model_catalog_shows_each_models_price() -> None:
    from image_pipeline.core.jobs import model_catalog
    from image_pipeline.core.settings import Settings

    catalog = model_catalog(Settings())
    for model in catalog["models"]:
        assert (
            model["price"]["usd_per_image"] > 0 and model["price"]["as_of"] == price_table().as_of.isoformat()
        )
    nova = next(m for m in catalog["models"] if m["id"] == "nova-canvas")
    assert nova["price_premium"]["entry"] == "nova-canvas-premium"
    assert all("price_premium" not in m for m in catalog["models"] if m["id"] != "nova-canvas")


def test_the_price_table_is_package_data() -> None:
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    assert "prices.json" in pyproject["tool"]["setuptools"]["package-data"]["image_pipeline.models"]
    assert PRICES_FILE.parent.name == "models" and PRICES_SOURCE.endswith(str(PRICES_FILE.name))
