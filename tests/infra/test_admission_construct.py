"""Admission control in the synthesized stack (``stacks/admission.py``): the slots table, the
Admission function's two DynamoDB actions on it and nothing else, its environment, the ASL's slot
states and the Map's concurrency; a bad ``imagegen:modelConcurrency`` stops synthesis."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks.admission import RELEASE_ACTIONS, SLOT_ACTIONS
from stacks.config import ImagegenConfig
from tests.infra.stack_template import function_id, granted, role_of, statements_of_role
from tests.infra.synthesis import Synthesized


def _slots_table(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    tables = {
        k: v
        for k, v in synth.resources("AWS::DynamoDB::GlobalTable").items()
        if v["Properties"]["KeySchema"] == [{"AttributeName": "model", "KeyType": "HASH"}]
    }
    assert len(tables) == 1, list(tables)
    return next(iter(tables.items()))


def test_the_slots_table(synthesized: Synthesized) -> None:
    _, table = _slots_table(synthesized)
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS"}
    assert props["Replicas"][0]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["DeletionPolicy"] == "Delete"  # slots are short-lived state


def test_the_admission_function_gets_its_table_and_nothing_more(synthesized: Synthesized) -> None:
    table_id, _ = _slots_table(synthesized)
    rights = granted(statements_of_role(synthesized, role_of(synthesized, "admission")))
    dynamodb = {a: r for a, r in rights.items() if a.startswith("dynamodb:")}
    assert dynamodb == {action: {f"<{table_id}.Arn>"} for action in SLOT_ACTIONS}
    assert not [a for a in rights if a.startswith(("bedrock:", "states:"))]
    # S3: only to look for its job's cancellation marker (a waiting branch of a cancelled job stops)
    assert {a for a in rights if a.startswith("s3:")} == {"s3:ListBucket"}
    listing = [
        s
        for s in statements_of_role(synthesized, role_of(synthesized, "admission"))
        if "s3:ListBucket" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    ]
    assert [s["Condition"] for s in listing] == [{"StringLike": {"s3:prefix": ["cancellations/*"]}}]
    for other in ("validate_request", "build_manifest", "http_api"):
        theirs = granted(statements_of_role(synthesized, role_of(synthesized, other)))
        assert not any(f"<{table_id}.Arn>" in r for r in theirs.values()), other
    env = synthesized.template_json["Resources"][function_id(synthesized, "admission")]["Properties"]
    variables = env["Environment"]["Variables"]
    assert variables["ADMISSION_TABLE"] == {"Ref": table_id}
    assert json.loads(variables["MODEL_CONCURRENCY"]) == {}
    assert env["Timeout"] <= 20


def test_generate_image_may_only_give_its_slot_back(synthesized: Synthesized) -> None:
    """GenerateImage releases its branch's slot right after the model's answer: UpdateItem on the slots
    table and nothing else of it, and the table's name; not the quotas (it never takes a slot)."""
    table_id, _ = _slots_table(synthesized)
    rights = granted(statements_of_role(synthesized, role_of(synthesized, "generate_image")))
    on_table = {a for a, r in rights.items() if f"<{table_id}.Arn>" in r}
    assert on_table == set(RELEASE_ACTIONS) == {"dynamodb:UpdateItem"}
    props = synthesized.template_json["Resources"][function_id(synthesized, "generate_image")]["Properties"]
    variables = props["Environment"]["Variables"]
    assert variables["ADMISSION_TABLE"] == {"Ref": table_id}
    assert "MODEL_CONCURRENCY" not in variables


def test_the_map_is_not_the_limit(synthesized: Synthesized) -> None:
    env = synthesized.template_json["Resources"][function_id(synthesized, "validate_request")]["Properties"]
    assert env["Environment"]["Variables"]["MAP_MAX_CONCURRENCY"] == "40"


def test_the_configured_quotas_reach_the_function(tmp_path: Any) -> None:
    config = ImagegenConfig.from_mapping({"modelConcurrency": '{"stable-image-core": 4}'})
    assert config.model_concurrency == {"stable-image-core": 4}


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('{"stable-image-core": 0}', "a quota of 0 would never let a call through"),
        ('{"stable-image-core": -3}', "a quota of -3 would never let a call through"),
        ('{"stable-image-core": "many"}', "not 'many'"),
        ('{"stable-image-core": 1.5}', "not 1.5"),
        ("four", "not a JSON object"),
        ('{"dall-e-3": 4}', "unknown model(s) dall-e-3"),
    ],
)
def test_a_bad_quota_stops_synthesis(value: str, words: str) -> None:
    with pytest.raises(ValueError, match="imagegen:modelConcurrency") as raised:
        ImagegenConfig.from_mapping({"modelConcurrency": value})
    assert words in str(raised.value)
