"""``imagegen keys`` (``imagegen/cli/keys.py``) against moto's API Gateway and CloudFormation: a
deployment like the stack's (a REST API with a stage, its usage plan and first key, the outputs)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from image_pipeline.core.index_keys import table_definition
from image_pipeline.core.spend import SpendLedger
from image_pipeline.core.tenancy import Caller
from moto import mock_aws

from imagegen.cli.keys import (
    OWN_PLAN_PREFIX,
    Deployment,
    KeysError,
    Limits,
    create_key,
    deployment_of,
    list_keys,
    revoke_key,
)
from imagegen.cli.main import main

REGION = "us-west-2"
STACK = "Imagegen"


def _deployment(
    apigw: Any, cfn: Any, *, plan_output: bool = True, index_table: str | None = None
) -> Deployment:
    api = apigw.create_rest_api(name="imagegen")["id"]
    root = apigw.get_resources(restApiId=api)["items"][0]["id"]
    apigw.put_method(
        restApiId=api, resourceId=root, httpMethod="GET", authorizationType="NONE", apiKeyRequired=True
    )
    apigw.put_integration(restApiId=api, resourceId=root, httpMethod="GET", type="MOCK")
    apigw.create_deployment(restApiId=api, stageName="v1")
    plan = apigw.create_usage_plan(
        name="clients",
        apiStages=[{"apiId": api, "stage": "v1"}],
        throttle={"rateLimit": 10, "burstLimit": 20},
        quota={"limit": 1000, "period": "DAY"},
    )["id"]
    first = apigw.create_api_key(name="first", enabled=True)["id"]
    apigw.create_usage_plan_key(usagePlanId=plan, keyId=first, keyType="API_KEY")
    outputs = {"ApiUrl": f"https://{api}.execute-api.{REGION}.amazonaws.com/v1/", "ApiKeyId": first}
    if plan_output:
        outputs["UsagePlanId"] = plan
    if index_table:
        outputs["ImageIndexTableName"] = index_table
    template = {
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    cfn.create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    return Deployment(api, "v1", plan, first, index_table)


@pytest.fixture
def aws(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any, Deployment]]:
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws():
        apigw = boto3.client("apigateway", region_name=REGION)
        cfn = boto3.client("cloudformation", region_name=REGION)
        yield apigw, cfn, _deployment(apigw, cfn)


def test_the_deployment_is_found_from_the_stack_outputs(aws: tuple[Any, Any, Deployment]) -> None:
    apigw, cfn, expected = aws
    assert deployment_of(cfn, apigw, STACK) == expected
    with pytest.raises(KeysError, match="cannot read the stack 'Other'"):
        deployment_of(cfn, apigw, "Other")


def test_an_older_stack_without_the_plan_output_is_found_by_its_first_key(aws_credentials: None) -> None:
    with mock_aws():
        apigw = boto3.client("apigateway", region_name=REGION)
        cfn = boto3.client("cloudformation", region_name=REGION)
        expected = _deployment(apigw, cfn, plan_output=False)
        assert deployment_of(cfn, apigw, STACK) == expected


def test_create_adds_a_key_to_the_shared_plan_with_its_caller_namespace(
    aws: tuple[Any, Any, Deployment],
) -> None:
    apigw, _, deployment = aws
    created = create_key(apigw, deployment, "alice")
    assert created["value"] and created["enabled"] and created["usage_plan"] == deployment.usage_plan_id
    # The key's caller is its id: its namespace is the folder of its images.
    assert created["caller_namespace"] == Caller("apiKey", created["id"]).namespace
    assert (
        created["limits"] == {"rate": 10.0, "burst": 20, "quota_per_day": 1000} and not created["own_limits"]
    )
    listed = {r["name"]: r for r in list_keys(apigw, deployment)}
    assert set(listed) == {"first", "alice"} and "value" not in listed["alice"]
    assert listed["first"]["first_key"] and not listed["alice"]["first_key"]
    with pytest.raises(KeysError, match="a key named 'alice' exists"):
        create_key(apigw, deployment, "alice")
    with pytest.raises(KeysError, match="1 to 64 letters"):
        create_key(apigw, deployment, "not a name")


def test_a_key_with_its_own_limits_gets_a_plan_of_its_own(aws: tuple[Any, Any, Deployment]) -> None:
    apigw, _, deployment = aws
    created = create_key(apigw, deployment, "bob", Limits(rate=2, burst=4, quota_per_day=50))
    plan = apigw.get_usage_plan(usagePlanId=created["usage_plan"])
    assert plan["name"] == f"{OWN_PLAN_PREFIX}bob" and created["own_limits"]
    assert plan["apiStages"] == [{"apiId": deployment.api_id, "stage": "v1"}]
    assert created["limits"] == {"rate": 2.0, "burst": 4, "quota_per_day": 50}
    assert {r["name"] for r in list_keys(apigw, deployment)} == {"first", "bob"}


def test_revoke_disables_and_delete_removes_the_key_and_its_plan(aws: tuple[Any, Any, Deployment]) -> None:
    apigw, _, deployment = aws
    alice = create_key(apigw, deployment, "alice")
    bob = create_key(apigw, deployment, "bob", Limits(rate=2, burst=4, quota_per_day=50))
    revoked = revoke_key(apigw, deployment, "alice")
    assert revoked["revoked"] == "disabled" and not apigw.get_api_key(apiKey=alice["id"])["enabled"]
    assert {r["name"]: r["enabled"] for r in list_keys(apigw, deployment)} == {
        "alice": False,
        "bob": True,
        "first": True,
    }
    assert revoke_key(apigw, deployment, bob["id"], delete=True)["revoked"] == "deleted"
    assert {r["name"] for r in list_keys(apigw, deployment)} == {"alice", "first"}
    plans = {p["id"] for p in apigw.get_usage_plans()["items"]}
    assert bob["usage_plan"] not in plans and deployment.usage_plan_id in plans
    with pytest.raises(KeysError, match="first key"):
        revoke_key(apigw, deployment, "first", delete=True)
    with pytest.raises(KeysError, match="no key 'carol'"):
        revoke_key(apigw, deployment, "carol")


def test_the_command_prints_json_and_names_what_is_wrong(
    aws: tuple[Any, Any, Deployment], capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["keys", "--stack", STACK, "create", "carol", "--rate", "1", "--burst", "2", "--quota", "3"])
        == 0
    )
    created = json.loads(capsys.readouterr().out)
    assert created["name"] == "carol" and created["value"]
    assert main(["keys", "--stack", STACK, "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in listed] == ["carol", "first"] and all("value" not in r for r in listed)
    assert main(["keys", "--stack", STACK, "revoke", "carol"]) == 0
    assert json.loads(capsys.readouterr().out)["revoked"] == "disabled"
    assert main(["keys", "--stack", STACK, "create", "dave", "--rate", "1"]) == 2
    assert "--rate, --burst and --quota go together" in capsys.readouterr().err
    assert main(["keys", "--stack", "Missing", "list"]) == 2
    assert "cannot read the stack 'Missing'" in capsys.readouterr().err


def test_a_key_with_its_own_daily_spend_limit(aws: tuple[Any, Any, Deployment]) -> None:
    """``--daily-spend-usd``: an item of the spend ledger (in the image index's table) for the key's
    caller, which the API's reservation reads before the deployment's default; gone with the key."""
    apigw, _, deployment = aws
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(TableName="index", **table_definition())
    deployment = replace(deployment, index_table="index")
    ledger = SpendLedger(dynamodb, "index", default_limit_usd=20.0, default_model="stable-image-core")
    created = create_key(apigw, deployment, "erin", daily_spend_usd=1.5, ledger=ledger)
    assert created["daily_spend_usd"] == 1.5
    namespace = Caller("apiKey", created["id"]).namespace
    assert ledger.limit_micro(namespace) == 1_500_000  # its own, not the deployment's 20
    listed = {r["name"]: r["daily_spend_usd"] for r in list_keys(apigw, deployment, ledger)}
    assert listed == {"erin": 1.5, "first": None}
    revoke_key(apigw, deployment, "erin", delete=True, ledger=ledger)
    assert ledger.limit_micro(namespace) == 20_000_000
    with pytest.raises(KeysError, match="positive number"):
        create_key(apigw, deployment, "frank", daily_spend_usd=0, ledger=ledger)
    with pytest.raises(KeysError, match="no ImageIndexTableName output"):
        create_key(apigw, deployment, "frank", daily_spend_usd=1.0, ledger=None)
    assert {r["name"] for r in list_keys(apigw, deployment)} == {"first"}  # nothing made when refused


def test_the_command_reads_the_ledger_table_from_the_stack(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws():
        apigw = boto3.client("apigateway", region_name=REGION)
        cfn = boto3.client("cloudformation", region_name=REGION)
        _deployment(apigw, cfn, index_table="imagegen-index")
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(TableName="imagegen-index", **table_definition())
        assert main(["keys", "--stack", STACK, "create", "gina", "--daily-spend-usd", "3"]) == 0
        created = json.loads(capsys.readouterr().out)
        assert created["daily_spend_usd"] == 3.0
        ledger = SpendLedger(dynamodb, "imagegen-index", default_limit_usd=None, default_model="x")
        assert ledger.own_limit_micro(Caller("apiKey", created["id"]).namespace) == 3_000_000
        assert main(["keys", "--stack", STACK, "create", "hal", "--daily-spend-usd", "-2"]) == 2
        assert "positive number" in capsys.readouterr().err
