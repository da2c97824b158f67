"""The image index (``stacks/index.py``) in the synthesized stack: one DynamoDB table, on demand, with
point-in-time recovery, encryption and a TTL that follows the images' retention, its keys those of
``image_pipeline.core.image_index``, and the grants the composing stack gives each function."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match
from image_pipeline.core.index_keys import GSIS, PK, SEARCH_PARAMETERS, SK, TTL_ATTRIBUTE

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

    def actions_on_table(name: str) -> dict[str, set[str]]:
        rights = granted(statements_of_role(synthesized, role_of(synthesized, name)))
        return {a: r for a, r in rights.items() if a.startswith("dynamodb:")}

    arn = f"<{table_id}.Arn>"
    assert actions_on_table("validate_request") == {"dynamodb:PutItem": {arn}}
    assert actions_on_table("generate_image") == {
        "dynamodb:PutItem": {arn},
        "dynamodb:Query": {f"{arn}/index/*"},
    }
    assert actions_on_table("build_manifest") == {"dynamodb:UpdateItem": {arn}}
    assert actions_on_table("http_api") == {"dynamodb:Query": {f"{arn}/index/*"}}
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
