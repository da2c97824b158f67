"""The image index (``stacks/index.py``) in the synthesized stack: one DynamoDB table, on demand, with
point-in-time recovery, encryption and a TTL that follows the images' retention, its keys those of
``image_pipeline.core.image_index``, and the grants the composing stack gives each function."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match
from image_pipeline.core.index_keys import GSIS, PK, SEARCH_PARAMETERS, SK, SPEND_PREFIX, TTL_ATTRIBUTE

from stacks.config import ImagegenConfig
from tests.infra.stack_template import function_id, granted, method, role_of, statements_of_role
from tests.infra.synthesis import Synthesized


def _table(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    tables = synth.resources("AWS::DynamoDB::GlobalTable")
    ours = {
        k: v
        for k, v in tables.items()
        if {g["IndexName"] for g in v["Properties"].get("GlobalSecondaryIndexes", [])} == set(GSIS)
    }
    assert len(ours) == 1, list(tables)
    return next(iter(ours.items()))


def test_one_table_on_demand_with_pitr_encryption_and_ttl(synthesized: Synthesized) -> None:
    _, table = _table(synthesized)
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [
        {"AttributeName": PK, "KeyType": "HASH"},
        {"AttributeName": SK, "KeyType": "RANGE"},
    ]
    assert props["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS"}
    replica = props["Replicas"][0]
    assert replica["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert {
        g["IndexName"]: [k["AttributeName"] for k in g["KeySchema"]] for g in props["GlobalSecondaryIndexes"]
    } == {name: [a for a in keys if a] for name, keys in GSIS.items()}
    assert table["DeletionPolicy"] == "Retain"


def test_ttl_matches_the_buckets_expiration_in_every_function(
    synthesized: Synthesized, variant: Synthesized
) -> None:
    for synth in (synthesized, variant):
        table_id, _ = _table(synth)
        bucket_rule = [
            rule
            for bucket in synth.resources("AWS::S3::Bucket").values()
            for rule in bucket["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
            if rule.get("Id") == "expire-generated-images"
        ]
        assert len(bucket_rule) == 1
        days = bucket_rule[0]["ExpirationInDays"]
        for name in ("validate_request", "generate_image", "build_manifest", "http_api"):
            env = synth.template_json["Resources"][function_id(synth, name)]["Properties"]["Environment"][
                "Variables"
            ]
            assert env["INDEX_TABLE"] == {"Ref": table_id}
            assert env["IMAGE_EXPIRATION_DAYS"] == str(days)


def test_grants_where_the_parts_meet(synthesized: Synthesized) -> None:
    table_id, _ = _table(synthesized)

    arn = f"<{table_id}.Arn>"

    def actions_on_table(name: str) -> dict[str, set[str]]:
        """The DynamoDB rights of a function on the index's table and its GSIs (not on other tables:
        the admission control's slots are tests/infra/test_admission_construct.py's)."""
        rights = granted(statements_of_role(synthesized, role_of(synthesized, name)))
        on_index = {
            a: {r for r in resources if r == arn or r.startswith(f"{arn}/")}
            for a, resources in rights.items()
        }
        return {a: r for a, r in on_index.items() if a.startswith("dynamodb:") and r}

    ledger = {"dynamodb:GetItem": {arn}, "dynamodb:UpdateItem": {arn}}  # the spend ledger's items
    assert actions_on_table("validate_request") == ledger  # the job's item (UpdateItem) and the ledger
    assert actions_on_table("generate_image") == {
        "dynamodb:PutItem": {arn},
        "dynamodb:Query": {f"{arn}/index/*"},
    }
    assert actions_on_table("build_manifest") == ledger
    # GET /jobs and GET /images/search query the GSIs; the job routes write a job's item as they start
    # it and the list settles one whose execution has ended (UpdateItem, as the ledger's).
    assert actions_on_table("http_api") == {"dynamodb:Query": {f"{arn}/index/*"}, **ledger}
    # A cache hit copies an earlier PNG: the image branch reads *.png keys too.
    rights = granted(statements_of_role(synthesized, role_of(synthesized, "generate_image")))
    assert any(r.endswith("/*.png") for r in rights["s3:GetObject"])


def test_share_cache_is_off_by_default_and_context_turns_it_on(synthesized: Synthesized) -> None:
    env = synthesized.template_json["Resources"][function_id(synthesized, "generate_image")]["Properties"]
    assert env["Environment"]["Variables"].get("SHARE_CACHE", "False") == "False"
    synthesized.template.has_output("ImageIndexTableName", {"Value": {"Ref": Match.any_value()}})


def test_get_images_search_is_a_keyed_route_of_the_function(
    synthesized: Synthesized, variant: Synthesized
) -> None:
    found = method(synthesized, "GET", "/images/search")
    assert found["ApiKeyRequired"] is True and found["OperationName"] == "SearchImages"
    assert found["RequestParameters"] == {f"method.request.querystring.{p}": False for p in SEARCH_PARAMETERS}
    assert found["Integration"]["Type"] == "AWS_PROXY"
    assert method(variant, "GET", "/images/search")["AuthorizationType"] == "AWS_IAM"


def test_the_spend_ledger_grants_reach_only_its_items(synthesized: Synthesized, variant: Synthesized) -> None:
    """GetItem and UpdateItem of the ledger only on ``SPEND#`` partition keys (IAM's
    ``dynamodb:LeadingKeys``): the functions that reserve and settle cannot touch a job's or an image's
    item through them."""
    for name in ("validate_request", "build_manifest", "http_api"):
        ledger = [
            s
            for s in statements_of_role(synthesized, role_of(synthesized, name))
            if s.get("Sid") == "SpendLedger"
        ]
        assert len(ledger) == 1, name
        assert sorted(ledger[0]["Action"]) == ["dynamodb:GetItem", "dynamodb:UpdateItem"]
        assert ledger[0]["Condition"] == {
            "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{SPEND_PREFIX}*"]}
        }
    # the deployment's ceiling reaches every function that reserves or settles, only when configured
    for name in ("validate_request", "build_manifest", "http_api"):
        plain = synthesized.template_json["Resources"][function_id(synthesized, name)]["Properties"]
        assert "DAILY_SPEND_LIMIT_USD" not in plain["Environment"]["Variables"]
        varied = variant.template_json["Resources"][function_id(variant, name)]["Properties"]
        assert varied["Environment"]["Variables"]["DAILY_SPEND_LIMIT_USD"] == "2.5"


@pytest.mark.parametrize("value", ["0", "-1", "ten", "nan", "inf", 0, -0.5])
def test_a_spend_limit_that_is_not_a_positive_number_stops_synthesis(value: object) -> None:
    with pytest.raises(ValueError, match="imagegen:dailySpendLimitUsd"):
        ImagegenConfig.from_mapping({"dailySpendLimitUsd": value})
    assert ImagegenConfig.from_mapping({"dailySpendLimitUsd": "0.5"}).daily_spend_limit_usd == 0.5
