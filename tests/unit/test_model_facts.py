"""The model facts file and its loader (image_pipeline.models.facts)."""

from __future__ import annotations

import json
import tomllib
from datetime import date
from pathlib import Path

import pytest
from image_pipeline.models import facts
from image_pipeline.models.ids import BEDROCK_MODEL_IDS
from image_pipeline.models.registry import list_adapters
from pydantic import ValidationError

INPAINT = "stability.stable-image-inpaint-v1:0"


def test_the_shipped_file_reads_and_every_fact_has_a_source_and_a_day():
    loaded = facts.load_facts()
    assert loaded.read_on == date(2026, 11, 30)
    for model in loaded.models.values():
        for fact in (model.lifecycle, model.regions, model.quota, *model.inference_profiles):
            assert fact.source.startswith("https://"), model.model_id
            assert fact.read_on == loaded.read_on


def test_lookup_by_bedrock_id_or_registry_id():
    assert facts.model_facts("titan-image-v2") is facts.model_facts("amazon.titan-image-generator-v2:0")
    with pytest.raises(KeyError, match="no facts"):
        facts.model_facts("dall-e")


@pytest.mark.parametrize(
    ("model", "day", "status"),
    [
        ("titan-image-v2", date(2025, 12, 29), "ACTIVE"),
        ("titan-image-v2", date(2025, 12, 30), "LEGACY"),
        ("titan-image-v2", date(2026, 6, 29), "LEGACY"),
        ("titan-image-v2", date(2026, 6, 30), "EOL"),
        ("titan-image-v1", date(2025, 8, 15), "EOL"),
        ("nova-canvas", date(2026, 5, 1), "LEGACY"),
        ("nova-canvas", date(2026, 11, 30), "EOL"),
        ("stable-image-core", date(2030, 1, 1), "ACTIVE"),
    ],
)
def test_lifecycle_on_a_day(model, day, status):
    assert facts.lifecycle_on(model, day) == status


def test_offered_in_names_the_model_id_or_the_profile():
    assert facts.offered_in("stable-image-core", "us-west-2") == "stability.stable-image-core-v1:1"
    assert facts.offered_in("stable-image-core", "us-east-1") is None
    assert facts.offered_in(INPAINT, "us-east-2") == "us.stability.stable-image-inpaint-v1:0"
    assert facts.offered_in(INPAINT, "eu-west-1") is None
    offer = facts.offer_in(INPAINT, "us-west-2")
    assert offer is not None and offer.via_profile
    assert offer.profile is not None
    assert set(offer.profile.destination_regions) == {"us-east-1", "us-east-2", "us-west-2"}
    assert facts.regions_offering(INPAINT) == ("us-east-1", "us-east-2", "us-west-2")
    assert facts.regions_offering("nova-canvas") == ("ap-northeast-1", "eu-west-1", "us-east-1")


def test_a_region_that_is_only_a_profile_source_gets_the_profile():
    entry = facts.model_facts("stable-image-core").model_copy(
        update={
            "inference_profiles": (
                facts.InferenceProfile(
                    id="us.stability.stable-image-core-v1:1",
                    source_regions=("us-east-1", "us-west-2"),
                    destination_regions=("us-west-2",),
                    source="https://example.test",
                    read_on=date(2026, 11, 30),
                ),
            )
        }
    )
    in_region = entry.offer_in("us-west-2")
    assert in_region is not None and in_region.invoke_id == "stability.stable-image-core-v1:1"
    from_east = entry.offer_in("us-east-1")
    assert from_east is not None and from_east.invoke_id == "us.stability.stable-image-core-v1:1"


def test_registry_ids_come_from_the_facts_and_each_has_one_adapter():
    assert list(BEDROCK_MODEL_IDS) == [m.registry_id for m in facts.registry_model_facts()]
    assert {a.registry_id: a.model_id for a in list_adapters()} == BEDROCK_MODEL_IDS


def _rewrite(tmp_path: Path, change) -> Path:
    data = json.loads(facts.FACTS_FILE.read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_a_status_that_contradicts_the_dates_is_refused(tmp_path):
    def wrong(data):
        data["models"]["amazon.titan-image-generator-v2:0"]["lifecycle"]["status"] = "ACTIVE"

    with pytest.raises(ValidationError, match="does not match the dates"):
        facts.read_facts(_rewrite(tmp_path, wrong))


def test_an_unknown_key_is_refused(tmp_path):
    def typo(data):
        data["models"]["stability.stable-image-core-v1:1"]["regoins"] = {}

    with pytest.raises(ValidationError, match="regoins"):
        facts.read_facts(_rewrite(tmp_path, typo))


def test_the_facts_file_is_package_data():
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    assert "model_facts.json" in pyproject["tool"]["setuptools"]["package-data"]["image_pipeline.models"]


def test_readme_shows_the_generated_model_table():
    """README's model table is the one ``python -m tools.model_table`` writes from the facts file."""
    from tools.model_table import README, model_table, readme_table

    assert readme_table(README.read_text(encoding="utf-8")) == model_table()


def test_the_table_says_lifecycle_and_regions():
    from tools.model_table import model_table

    table = model_table(default_model="stable-image-core")
    assert (
        "| `stable-image-core` (default) | `stability.stable-image-core-v1:1` | active | us-west-2 | yes |"
        in table
    )
    assert "| `titan-image-v2` | `amazon.titan-image-generator-v2:0` | **end of life** 2026-06-30 |" in table
