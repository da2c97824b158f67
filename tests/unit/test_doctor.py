"""``imagegen doctor``: each check against an offline account.

STS, CloudFormation and SSM are moto's. moto 5.2.5 does not serve Bedrock's GetFoundationModel or
GetFoundationModelAvailability, nor Service Quotas' ListServiceQuotas / ListAWSDefaultServiceQuotas
for Bedrock (NotImplementedError; its Service Quotas knows only ``vpc``), so those clients are
botocore Stubbers whose responses are checked against the operation's output shape, enums included
(:func:`shaped`), before the Stubber checks them again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.model import Shape
from botocore.stub import Stubber
from image_pipeline.models.facts import load_facts
from moto import mock_aws

from imagegen.cli import doctor
from imagegen.cli.doctor import (
    READ_ONLY_OPERATIONS,
    BedrockQuotas,
    DoctorCannotRun,
    ModelCheckContext,
    ModelChoice,
    MutatingCallRefused,
    Report,
    check_offered,
    deployment_from_context,
    format_table,
    read_only,
    run_doctor,
    summary_lines,
)

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ACCOUNT = "123456789012"  # moto's
FACTS = load_facts().models
CORE = ModelChoice("stable-image-core", "stability.stable-image-core-v1:1")
CORE_QUOTA = "On-demand model inference requests per minute for Stability.ai Stable Image Core"


# --- Responses built from botocore's output shapes -------------------------------------------------------


def _check_shape(value: Any, shape: Shape, path: str) -> None:
    """What botocore's own validation leaves out: unknown members and enum values, at any depth."""
    if shape.type_name == "structure":
        assert isinstance(value, dict), path
        unknown = set(value) - set(shape.members)
        assert not unknown, f"{path}: not in {shape.name}: {unknown}"
        missing = set(shape.required_members) - set(value)
        assert not missing, f"{path}: {shape.name} requires {missing}"
        for name, member in value.items():
            _check_shape(member, shape.members[name], f"{path}.{name}")
    elif shape.type_name == "list":
        for i, item in enumerate(value):
            _check_shape(item, shape.member, f"{path}[{i}]")  # type: ignore[attr-defined]
    elif shape.type_name == "string" and shape.enum:
        assert value in shape.enum, f"{path}: {value!r} is not one of {shape.enum}"


def shaped(client: Any, method: str, response: dict[str, Any]) -> dict[str, Any]:
    """``response``, once it fits the output shape of ``client``'s ``method`` exactly."""
    operation = client.meta.service_model.operation_model(client.meta.method_to_api_mapping[method])
    _check_shape(response, operation.output_shape, operation.name)
    return response


class BedrockStub:
    """A stubbed ``bedrock`` client: queue answers in the order the doctor asks (per model: lifecycle,
    then availability)."""

    def __init__(self, region: str) -> None:
        self.client = boto3.client("bedrock", region_name=region)
        self.stubber = Stubber(self.client)
        self.region = region

    def model(
        self,
        model_id: str,
        *,
        status: str = "ACTIVE",
        legacy: datetime | None = None,
        end: datetime | None = None,
    ) -> BedrockStub:
        lifecycle: dict[str, Any] = {"status": status, "startOfLifeTime": datetime(2024, 10, 1, tzinfo=UTC)}
        if legacy:
            lifecycle["legacyTime"] = legacy
        if end:
            lifecycle["endOfLifeTime"] = end
        response = {
            "modelDetails": {
                "modelArn": f"arn:aws:bedrock:{self.region}::foundation-model/{model_id}",
                "modelId": model_id,
                "modelName": model_id.split(".", 1)[1],
                "providerName": "Stability AI" if model_id.startswith("stability.") else "Amazon",
                "inputModalities": ["TEXT", "IMAGE"],
                "outputModalities": ["IMAGE"],
                "responseStreamingSupported": False,
                "customizationsSupported": [],
                "inferenceTypesSupported": ["ON_DEMAND"],
                "modelLifecycle": lifecycle,
            }
        }
        self.stubber.add_response(
            "get_foundation_model",
            shaped(self.client, "get_foundation_model", response),
            {"modelIdentifier": model_id},
        )
        return self

    def availability(
        self,
        model_id: str,
        *,
        agreement: str = "AVAILABLE",
        authorization: str = "AUTHORIZED",
        entitlement: str = "AVAILABLE",
        region: str = "AVAILABLE",
        error_message: str | None = None,
    ) -> BedrockStub:
        agreement_availability = {"status": agreement}
        if error_message:
            agreement_availability["errorMessage"] = error_message
        response = {
            "modelId": model_id,
            "agreementAvailability": agreement_availability,
            "authorizationStatus": authorization,
            "entitlementAvailability": entitlement,
            "regionAvailability": region,
        }
        self.stubber.add_response(
            "get_foundation_model_availability",
            shaped(self.client, "get_foundation_model_availability", response),
            {"modelId": model_id},
        )
        return self

    def error(self, method: str, model_id: str, code: str, message: str, status: int) -> BedrockStub:
        operation = self.client.meta.service_model.operation_model(
            self.client.meta.method_to_api_mapping[method]
        )
        assert code in [e.name for e in operation.error_shapes], f"{code} is not an error of {operation.name}"
        params = {"modelIdentifier": model_id} if method == "get_foundation_model" else {"modelId": model_id}
        self.stubber.add_client_error(
            method,
            service_error_code=code,
            service_message=message,
            http_status_code=status,
            expected_params=params,
        )
        return self


def quota(name: str, value: float, code: str, region: str = "us-west-2") -> dict[str, Any]:
    return {
        "ServiceCode": "bedrock",
        "ServiceName": "Amazon Bedrock",
        "QuotaArn": f"arn:aws:servicequotas:{region}:{ACCOUNT}:bedrock/{code}",
        "QuotaCode": code,
        "QuotaName": name,
        "Value": value,
        "Unit": "None",
        "Adjustable": False,
        "GlobalQuota": False,
        "QuotaAppliedAtLevel": "ACCOUNT",
        "Description": name,
    }


OTHER_QUOTAS = [
    quota("On-demand model inference requests per minute for Amazon Nova Canvas", 100.0, "L-11111111"),
    quota(
        "Cross-Region model inference tokens per minute for Anthropic Claude Sonnet 4", 200000.0, "L-22222222"
    ),
]


class QuotaStub:
    """A stubbed ``service-quotas`` client: pages of ListServiceQuotas, then (when the doctor needs
    them) of ListAWSDefaultServiceQuotas."""

    def __init__(self, region: str) -> None:
        self.client = boto3.client("service-quotas", region_name=region)
        self.stubber = Stubber(self.client)

    def pages(self, method: str, *pages: list[dict[str, Any]]) -> QuotaStub:
        for i, quotas in enumerate(pages):
            response: dict[str, Any] = {"Quotas": quotas}
            params = {"ServiceCode": "bedrock"}
            if i + 1 < len(pages):
                response["NextToken"] = f"token-{i + 1}"
            if i:
                params["NextToken"] = f"token-{i}"
            self.stubber.add_response(method, shaped(self.client, method, response), params)
        return self

    def applied(self, *pages: list[dict[str, Any]]) -> QuotaStub:
        return self.pages("list_service_quotas", *pages)

    def defaults(self, *pages: list[dict[str, Any]]) -> QuotaStub:
        return self.pages("list_aws_default_service_quotas", *pages)

    def denied(self, method: str) -> QuotaStub:
        self.stubber.add_client_error(
            method,
            service_error_code="AccessDeniedException",
            service_message="User is not authorized to perform: servicequotas:ListServiceQuotas",
            http_status_code=400,
            expected_params={"ServiceCode": "bedrock"},
        )
        return self


# --- The offline account ---------------------------------------------------------------------------------


@pytest.fixture
def account(aws_credentials: None) -> Iterator[None]:
    with mock_aws():
        yield


def bootstrap(region: str, version: str = "27") -> None:
    """What ``cdk bootstrap`` leaves that the doctor reads: the CDKToolkit stack and the version parameter."""
    template = {
        "Resources": {
            "CdkBootstrapVersion": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {
                    "Type": "String",
                    "Name": "/cdk-bootstrap/hnb659fds/version",
                    "Value": version,
                },
            }
        },
        "Outputs": {"BootstrapVersion": {"Value": version}},
    }
    cfn = boto3.client("cloudformation", region_name=region)
    cfn.create_stack(StackName="CDKToolkit", TemplateBody=json.dumps(template))


def deploy_stack(region: str, name: str, outputs: dict[str, str]) -> None:
    template = {
        "Resources": {"Images": {"Type": "AWS::S3::Bucket"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name=region).create_stack(
        StackName=name, TemplateBody=json.dumps(template)
    )


def clients_for(region: str, bedrock: BedrockStub, quotas: QuotaStub) -> Callable[[str], Any]:
    """moto's clients for sts, cloudformation and ssm; the stubs for bedrock and service-quotas."""
    stubs = {"bedrock": bedrock.client, "service-quotas": quotas.client}
    made: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in made:
            made[service] = stubs.get(service) or boto3.client(service, region_name=region)  # type: ignore[call-overload]
        return made[service]

    return client


def run(
    region: str,
    bedrock: BedrockStub,
    quotas: QuotaStub,
    *,
    models: list[str] | None = None,
    context: dict[str, Any] | None = None,
) -> Report:
    deployment = deployment_from_context(context or {}, FACTS, models or [])
    with bedrock.stubber, quotas.stubber:
        report = run_doctor(deployment, region, clients_for(region, bedrock, quotas), facts=FACTS, now=NOW)
        bedrock.stubber.assert_no_pending_responses()
        quotas.stubber.assert_no_pending_responses()
    return report


def line(report: Report, label: str) -> doctor.CheckResult:
    return next(r for r in report.results if r.label == label)


def healthy_core(region: str = "us-west-2") -> tuple[BedrockStub, QuotaStub]:
    bedrock = BedrockStub(region).model(CORE.model_id).availability(CORE.model_id)
    quotas = QuotaStub(region).applied(OTHER_QUOTAS, [quota(CORE_QUOTA, 90.0, "L-33333333")])
    return bedrock, quotas


# --- The scenarios ---------------------------------------------------------------------------------------


def test_healthy_us_west_2_account_is_all_ok(account: None) -> None:
    bootstrap("us-west-2")
    bedrock, quotas = healthy_core()

    report = run("us-west-2", bedrock, quotas, models=["stable-image-core"])

    assert [(r.label, r.status) for r in report.results] == [
        ("identity", "ok"),
        ("cdk bootstrap", "ok"),
        ("stack Imagegen", "ok"),
        ("stable-image-core: Region", "ok"),
        ("stable-image-core: lifecycle", "ok"),
        ("stable-image-core: access", "ok"),
        ("stable-image-core: quota", "ok"),
    ]
    assert report.account == ACCOUNT and report.exit_status == 0
    assert line(report, "identity").data["arn"].startswith(f"arn:aws:sts::{ACCOUNT}:")
    assert line(report, "cdk bootstrap").data["version"] == "27"
    assert "not deployed in us-west-2 yet" in line(report, "stack Imagegen").finding
    region = line(report, "stable-image-core: Region")
    assert region.data == {"invoke_with": "stability.stable-image-core-v1:1", "via": "model_id"}
    quota_line = line(report, "stable-image-core: quota")  # found on the second page
    assert quota_line.data["value"] == 90.0 and quota_line.data["code"] == "L-33333333"
    assert "90 requests per minute (this account's value; L-33333333)" in quota_line.finding
    table = format_table(report)
    assert "The default model stable-image-core can be called in us-west-2." in table
    assert "fail" not in table


def test_region_where_the_default_model_is_not_offered_fails(account: None) -> None:
    bootstrap("eu-central-1")
    bedrock = (
        BedrockStub("eu-central-1")
        .error(
            "get_foundation_model",
            CORE.model_id,
            "ResourceNotFoundException",
            "The provided model identifier is invalid.",
            404,
        )
        .availability(
            CORE.model_id, agreement="NOT_AVAILABLE", entitlement="NOT_AVAILABLE", region="NOT_AVAILABLE"
        )
    )
    quotas = QuotaStub("eu-central-1").applied(OTHER_QUOTAS).defaults([])

    report = run("eu-central-1", bedrock, quotas, models=["stable-image-core"])

    offered = line(report, "stable-image-core: Region")
    assert offered.status == "fail"
    assert offered.finding.startswith("not offered in eu-central-1 (facts file, read 2026-11-30")
    assert offered.todo == "deploy to us-west-2, where stable-image-core is offered"
    assert line(report, "stable-image-core: lifecycle").status == "fail"
    access = line(report, "stable-image-core: access")
    assert access.status == "fail" and "not available in eu-central-1" in access.finding
    assert line(report, "stable-image-core: quota").status == "warn"
    assert report.exit_status == 1
    assert "The default model stable-image-core cannot be called in eu-central-1" in format_table(report)


def test_model_past_its_end_of_life_fails(account: None) -> None:
    bootstrap("us-west-2")
    titan = "amazon.titan-image-generator-v2:0"
    bedrock = (
        BedrockStub("us-west-2")
        .model(
            titan,
            status="LEGACY",
            legacy=datetime(2025, 12, 30, tzinfo=UTC),
            end=datetime(2026, 6, 30, tzinfo=UTC),
        )
        .availability(titan)
    )
    quotas = QuotaStub("us-west-2").applied(OTHER_QUOTAS).defaults([])

    report = run("us-west-2", bedrock, quotas, models=["titan-image-v2"])

    lifecycle = line(report, "titan-image-v2: lifecycle")
    assert lifecycle.status == "fail"
    assert lifecycle.finding == "end of life since 2026-06-30 (Bedrock: LEGACY, endOfLifeTime passed)"
    assert lifecycle.data["state"] == "EOL" and lifecycle.data["facts"] == "EOL"  # they agree: no note
    assert lifecycle.todo == (
        "set imagegen:defaultModel to stable-image-core and remove titan-image-v2 from imagegen:allowedModels"
    )
    assert report.exit_status == 1


def test_allowed_model_past_end_of_life_beside_a_healthy_default_exits_0(account: None) -> None:
    bootstrap("us-west-2")
    titan = "amazon.titan-image-generator-v2:0"
    bedrock, _ = healthy_core()
    bedrock.model(titan, status="LEGACY", end=datetime(2026, 6, 30, tzinfo=UTC)).availability(titan)
    quotas = (
        QuotaStub("us-west-2").applied(OTHER_QUOTAS, [quota(CORE_QUOTA, 90.0, "L-33333333")]).defaults([])
    )
    context = {
        "imagegen:allowedModels": "titan-image-v2,stable-image-core",
        "imagegen:defaultModel": "stable-image-core",
    }

    report = run("us-west-2", bedrock, quotas, context=context)

    assert [m.name for m in report.deployment.models] == ["stable-image-core", "titan-image-v2"]
    assert line(report, "titan-image-v2: lifecycle").status == "fail"
    assert (
        line(report, "titan-image-v2: lifecycle").todo == "remove titan-image-v2 from imagegen:allowedModels"
    )
    assert report.exit_status == 0
    assert "Allowed but not callable here: titan-image-v2" in format_table(report)


def test_lifecycle_that_disagrees_with_the_facts_file_is_a_warning(account: None) -> None:
    bootstrap("us-west-2")
    ultra = "stability.stable-image-ultra-v1:1"
    bedrock = (
        BedrockStub("us-west-2")
        .model(
            ultra,
            status="LEGACY",
            legacy=datetime(2026, 11, 1, tzinfo=UTC),
            end=datetime(2027, 5, 1, tzinfo=UTC),
        )
        .availability(ultra)
    )
    name = "On-demand model inference requests per minute for Stability.ai Stable Image Ultra"
    quotas = QuotaStub("us-west-2").applied([quota(name, 10.0, "L-44444444")])

    report = run("us-west-2", bedrock, quotas, models=["stable-image-ultra"])

    lifecycle = line(report, "stable-image-ultra: lifecycle")
    assert lifecycle.status == "warn"
    assert lifecycle.finding == (
        "legacy since 2026-11-01, end of life 2027-05-01 (Bedrock); the facts file (read 2026-11-30) says ACTIVE"
    )
    assert report.exit_status == 0


def test_marketplace_model_not_authorized_fails_with_the_marketplace_permissions(account: None) -> None:
    bootstrap("us-west-2")
    bedrock = (
        BedrockStub("us-west-2")
        .model(CORE.model_id)
        .availability(CORE.model_id, authorization="NOT_AUTHORIZED")
    )
    quotas = QuotaStub("us-west-2").applied([quota(CORE_QUOTA, 90.0, "L-33333333")])

    report = run("us-west-2", bedrock, quotas, models=["stable-image-core"])

    access = line(report, "stable-image-core: access")
    assert access.status == "fail"
    assert access.finding == (
        "the account is not authorized to invoke stability.stable-image-core-v1:1 (an AWS Marketplace model)"
    )
    for needed in (
        "aws-marketplace:Subscribe",
        "aws-marketplace:ViewSubscriptions",
        doctor.DOCS,
    ):
        assert needed in access.todo
    assert access.data["marketplace"] is True
    assert report.exit_status == 1


def test_marketplace_model_without_an_agreement_yet_is_a_warning(account: None) -> None:
    bootstrap("us-west-2")
    bedrock = (
        BedrockStub("us-west-2")
        .model(CORE.model_id)
        .availability(CORE.model_id, agreement="NOT_AVAILABLE", entitlement="NOT_AVAILABLE")
    )
    quotas = QuotaStub("us-west-2").applied([quota(CORE_QUOTA, 90.0, "L-33333333")])

    report = run("us-west-2", bedrock, quotas, models=["stable-image-core"])

    access = line(report, "stable-image-core: access")
    assert access.status == "warn"
    assert (
        access.finding
        == "AWS Marketplace model, not subscribed yet (agreement NOT_AVAILABLE, entitlement NOT_AVAILABLE): "
        "the first call subscribes the account"
    )
    assert "aws-marketplace:Subscribe" in access.todo
    assert "list-foundation-model-agreement-offers --model-id stability.stable-image-core-v1:1" in access.todo
    assert report.exit_status == 0


def test_failed_marketplace_subscription_fails_with_its_message(account: None) -> None:
    bootstrap("us-west-2")
    message = "Model access is denied due to IAM user or service role is not authorized to perform the required AWS Marketplace actions"
    bedrock = (
        BedrockStub("us-west-2")
        .model(CORE.model_id)
        .availability(CORE.model_id, agreement="ERROR", entitlement="NOT_AVAILABLE", error_message=message)
    )
    quotas = QuotaStub("us-west-2").applied([quota(CORE_QUOTA, 90.0, "L-33333333")])

    report = run("us-west-2", bedrock, quotas, models=["stable-image-core"])

    access = line(report, "stable-image-core: access")
    assert access.status == "fail" and message in access.finding
    assert report.exit_status == 1


def test_quota_not_applied_is_read_from_aws_defaults(account: None) -> None:
    bootstrap("us-west-2")
    bedrock = BedrockStub("us-west-2").model(CORE.model_id).availability(CORE.model_id)
    quotas = QuotaStub("us-west-2").applied(OTHER_QUOTAS).defaults([quota(CORE_QUOTA, 90.0, "L-33333333")])

    report = run("us-west-2", bedrock, quotas, models=["stable-image-core"])

    found = line(report, "stable-image-core: quota")
    assert found.status == "ok" and found.data["source"] == "default"
    assert "AWS default, no value applied to the account" in found.finding


def test_the_applied_quota_gives_admission_controls_calls_in_flight(account: None) -> None:
    """The account's applied requests per minute become imagegen:modelConcurrency (as core/admission
    derives its default: one call in flight per 10 requests a minute)."""
    bootstrap("us-west-2")
    bedrock = BedrockStub("us-west-2").model(CORE.model_id).availability(CORE.model_id)
    quotas = QuotaStub("us-west-2").applied([quota(CORE_QUOTA, 600.0, "L-33333333")])

    report = run("us-west-2", bedrock, quotas, models=["stable-image-core"])

    found = line(report, "stable-image-core: quota")
    assert found.data["calls_in_flight"] == 60
    assert "admission control: 60 calls in flight" in found.finding
    assert report.model_concurrency() == {"stable-image-core": 60}
    assert any(
        """-c imagegen:modelConcurrency='{"stable-image-core": 60}'""" in text
        for text in summary_lines(report)
    )


def test_quota_not_found_is_a_warning(account: None) -> None:
    bootstrap("us-west-2")
    bedrock = BedrockStub("us-west-2").model(CORE.model_id).availability(CORE.model_id)
    quotas = QuotaStub("us-west-2").applied(OTHER_QUOTAS).defaults(OTHER_QUOTAS)

    report = run("us-west-2", bedrock, quotas, models=["stable-image-core"])

    missing = line(report, "stable-image-core: quota")
    assert missing.status == "warn"
    assert missing.finding == f"no quota named '{CORE_QUOTA}' for Bedrock in us-west-2"
    assert "Service Quotas console" in missing.todo
    assert report.exit_status == 0


@pytest.mark.parametrize(
    ("value", "status", "words"),
    [(0.0, "fail", "the account cannot call it"), (5.0, "warn", "below the documented default 90")],
)
def test_quota_of_zero_fails_and_below_the_default_warns(
    account: None, value: float, status: str, words: str
) -> None:
    bootstrap("us-west-2")
    bedrock = BedrockStub("us-west-2").model(CORE.model_id).availability(CORE.model_id)
    quotas = QuotaStub("us-west-2").applied([quota(CORE_QUOTA, value, "L-33333333")])

    report = run("us-west-2", bedrock, quotas, models=["stable-image-core"])

    found = line(report, "stable-image-core: quota")
    assert found.status == status and words in found.finding
    assert report.exit_status == (1 if status == "fail" else 0)


def test_quotas_access_denied_is_a_warning(account: None) -> None:
    bootstrap("us-west-2")
    bedrock = BedrockStub("us-west-2").model(CORE.model_id).availability(CORE.model_id)
    quotas = QuotaStub("us-west-2").denied("list_service_quotas").denied("list_aws_default_service_quotas")

    report = run("us-west-2", bedrock, quotas, models=["stable-image-core"])

    denied = line(report, "stable-image-core: quota")
    assert denied.status == "warn"
    assert (
        denied.finding
        == "could not list the Bedrock quotas: access denied (needs servicequotas:ListServiceQuotas)"
    )


def test_quotas_are_listed_once_for_all_models() -> None:
    stub = QuotaStub("us-west-2").applied(OTHER_QUOTAS, [quota(CORE_QUOTA, 90.0, "L-33333333")])
    with stub.stubber:
        quotas = BedrockQuotas(stub.client)
        assert quotas.find(CORE_QUOTA).source == "applied"
        assert quotas.find(OTHER_QUOTAS[0]["QuotaName"]).quota == OTHER_QUOTAS[0]
        assert quotas.find(
            "  on-demand MODEL inference requests per minute for stability.ai stable image core "
        ).quota
        stub.stubber.assert_no_pending_responses()


def test_no_bootstrap_says_how_to_bootstrap(account: None) -> None:
    bedrock, quotas = healthy_core()

    report = run("us-west-2", bedrock, quotas, models=["stable-image-core"])

    missing = line(report, "cdk bootstrap")
    assert missing.status == "warn"
    assert (
        missing.finding
        == "no CDKToolkit stack in us-west-2, no bootstrap version in /cdk-bootstrap/hnb659fds/version"
    )
    assert missing.todo.startswith(f"cdk bootstrap aws://{ACCOUNT}/us-west-2")
    assert report.exit_status == 0


def test_bootstrap_under_another_toolkit_stack_name_is_found_by_its_parameter(account: None) -> None:
    boto3.client("ssm", region_name="us-west-2").put_parameter(
        Name="/cdk-bootstrap/hnb659fds/version", Value="30", Type="String"
    )
    bedrock, quotas = healthy_core()

    report = run("us-west-2", bedrock, quotas, models=["stable-image-core"])

    found = line(report, "cdk bootstrap")
    assert found.status == "ok" and found.data["version"] == "30"
    assert "no stack named CDKToolkit (bootstrapped with another --toolkit-stack-name?)" in found.finding


def test_old_bootstrap_version_is_a_warning(account: None) -> None:
    bootstrap("us-west-2", version="4")
    bedrock, quotas = healthy_core()

    report = run("us-west-2", bedrock, quotas, models=["stable-image-core"])

    old = line(report, "cdk bootstrap")
    assert old.status == "warn" and "needs 6 or later" in old.finding


def test_deployed_stack_shows_its_outputs(account: None) -> None:
    bootstrap("us-west-2")
    outputs = {
        "ApiUrl": "https://abc123.execute-api.us-west-2.amazonaws.com/prod/",
        "ImagesBucketName": "myimages-imagesbucket-1",
    }
    deploy_stack("us-west-2", "MyImages", outputs)
    bedrock, quotas = healthy_core()
    context = {"imagegen:stackName": "MyImages", "imagegen:allowedModels": ["stable-image-core"]}

    report = run("us-west-2", bedrock, quotas, context=context)

    stack = line(report, "stack MyImages")
    assert stack.status == "ok"
    assert stack.finding == "CREATE_COMPLETE, 2 outputs"
    assert stack.data["outputs"] == outputs
    table = format_table(report)
    assert (
        "Outputs of MyImages:\n  ApiUrl = https://abc123.execute-api.us-west-2.amazonaws.com/prod/" in table
    )


def test_only_read_operations_are_called(account: None) -> None:
    """A whole run with every kind of check, each call recorded before anything answers it."""
    bootstrap("us-west-2")
    deploy_stack("us-west-2", "Imagegen", {"ApiUrl": "https://x.example/prod/"})
    bedrock, quotas = healthy_core()
    nova = "amazon.nova-canvas-v1:0"
    bedrock.model(nova, status="LEGACY", end=datetime(2026, 9, 30, tzinfo=UTC)).availability(nova)
    calls: list[tuple[str, str]] = []
    inner = clients_for("us-west-2", bedrock, quotas)

    def recording(service: str) -> Any:
        client = inner(service)

        def record(model: Any, **_: Any) -> None:
            calls.append((service, model.name))

        client.meta.events.register_first("before-call.*.*", record, unique_id="test-record")
        return client

    deployment = deployment_from_context({}, FACTS, ["stable-image-core", "nova-canvas"])
    with bedrock.stubber, quotas.stubber:
        run_doctor(deployment, "us-west-2", recording, facts=FACTS, now=NOW)

    assert calls and set(calls) <= READ_ONLY_OPERATIONS
    assert {service for service, _ in calls} == {"sts", "cloudformation", "ssm", "bedrock", "service-quotas"}
    assert all(name.startswith(("Get", "List", "Describe")) for _, name in READ_ONLY_OPERATIONS)


def test_a_doctor_client_refuses_to_write(account: None) -> None:
    ssm = read_only(boto3.client("ssm", region_name="us-west-2"))

    with pytest.raises(MutatingCallRefused, match="refused ssm PutParameter"):
        ssm.put_parameter(Name="/imagegen/doctor", Value="x", Type="String")

    plain = boto3.client("ssm", region_name="us-west-2")
    assert plain.get_parameters(Names=["/imagegen/doctor"])["InvalidParameters"] == ["/imagegen/doctor"]


def test_the_guard_runs_before_a_stubber_answers(aws_credentials: None) -> None:
    stub = BedrockStub("us-west-2")
    method = "create_foundation_model_agreement"
    stub.stubber.add_response(method, shaped(stub.client, method, {"modelId": CORE.model_id}))
    client = read_only(stub.client)

    with (
        stub.stubber,
        pytest.raises(MutatingCallRefused, match="refused bedrock CreateFoundationModelAgreement"),
    ):
        client.create_foundation_model_agreement(modelId=CORE.model_id, offerToken="token")

    with pytest.raises(AssertionError):
        stub.stubber.assert_no_pending_responses()  # the queued answer was never taken


# --- Facts, configuration, the command -------------------------------------------------------------------


def test_every_registry_model_has_facts_and_a_quota_name() -> None:
    from image_pipeline.models.ids import BEDROCK_MODEL_IDS

    assert set(BEDROCK_MODEL_IDS.values()) <= set(FACTS)
    assert all(FACTS[model_id].quota.name for model_id in BEDROCK_MODEL_IDS.values())
    assert FACTS[CORE.model_id].quota.name == CORE_QUOTA and FACTS[CORE.model_id].marketplace


def test_profile_only_model_is_invoked_by_its_inference_profile() -> None:
    inpaint = ModelChoice("stability.stable-image-inpaint-v1:0", "stability.stable-image-inpaint-v1:0")
    ctx = ModelCheckContext(region="us-east-2", now=NOW, facts=FACTS, default=inpaint)

    result = check_offered(inpaint, ctx)

    assert result.status == "ok"
    assert result.data == {
        "invoke_with": "us.stability.stable-image-inpaint-v1:0",
        "via": "inference_profile",
    }
    assert "invoke with the profile id, not the model id" in result.finding


def test_models_come_from_cdk_json_context() -> None:
    context = json.loads((ROOT / "cdk.json").read_text())["context"]

    deployment = deployment_from_context(context, FACTS)

    assert deployment.default == CORE and deployment.models[0] == CORE
    assert {m.name for m in deployment.models} == set(context["imagegen:allowedModels"])
    assert deployment.stack_name == "Imagegen" and deployment.bootstrap_qualifier == "hnb659fds"


def test_context_lists_as_text_and_model_overrides() -> None:
    context = {
        "imagegen:allowedModels": '["sd3-5-large", "stable-image-ultra"]',
        "imagegen:defaultModel": "stable-image-ultra",
        "@aws-cdk/core:bootstrapQualifier": "custom123",
    }
    deployment = deployment_from_context(context, FACTS)
    assert [m.name for m in deployment.models] == ["stable-image-ultra", "sd3-5-large"]
    assert deployment.bootstrap_qualifier == "custom123"

    overridden = deployment_from_context(context, FACTS, ["stability.sd3-5-large-v1:0", "nova-canvas"])
    assert overridden.default == ModelChoice("sd3-5-large", "stability.sd3-5-large-v1:0")
    assert [m.name for m in overridden.models] == ["sd3-5-large", "nova-canvas"]

    with pytest.raises(DoctorCannotRun, match="unknown model 'dall-e'"):
        deployment_from_context(context, FACTS, ["dall-e"])
    with pytest.raises(DoctorCannotRun, match="imagegen:allowedModels is not a JSON list"):
        deployment_from_context({"imagegen:allowedModels": '["sd3-5-large",'}, FACTS)


def _args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    from imagegen.cli.main import build_parser

    return build_parser().parse_args(["doctor", "--cdk-json", str(tmp_path / "cdk.json"), *extra])


def test_json_output(account: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap("us-west-2")
    bedrock, quotas = healthy_core()
    (tmp_path / "cdk.json").write_text(
        json.dumps({"context": {"imagegen:allowedModels": ["stable-image-core"]}})
    )
    args = _args(tmp_path, "--region", "us-west-2", "--json")

    with bedrock.stubber, quotas.stubber:
        status = doctor.cmd_doctor(args, clients=clients_for("us-west-2", bedrock, quotas), now=NOW)

    out = json.loads(capsys.readouterr().out)
    assert status == 0 and out["exit_status"] == 0 and out["default_model_callable"] is True
    assert (
        out["account"] == ACCOUNT and out["region"] == "us-west-2" and out["region_source"] == "from --region"
    )
    assert [c["check"] for c in out["checks"]][:3] == ["identity", "cdk bootstrap", "stack Imagegen"]
    assert {c["status"] for c in out["checks"]} == {"ok"}
    quota_check = out["checks"][-1]
    assert quota_check["model"] == "stable-image-core" and quota_check["data"]["value"] == 90.0
    assert out["models"] == [{"name": "stable-image-core", "model_id": "stability.stable-image-core-v1:1"}]
    assert out["models_from"] == str(tmp_path / "cdk.json")


def test_no_credentials_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    status = doctor.cmd_doctor(_args(tmp_path, "--region", "us-west-2"))

    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert captured.err.startswith("imagegen doctor: no usable AWS credentials")
    assert captured.err.count("\n") == 1


def _scrubbed_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        **extra,
    )
    return env


def _imagegen(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagegen", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_doctor_help_in_a_subprocess(tmp_path: Path) -> None:
    done = _imagegen(["doctor", "--help"], _scrubbed_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "usage: imagegen doctor" in done.stdout and "--json" in done.stdout


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({}, "no usable AWS credentials"),
        (
            {
                "AWS_ACCESS_KEY_ID": "x",
                "AWS_SECRET_ACCESS_KEY": "y",
                "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            },
            "cannot reach AWS",
        ),
    ],
    ids=["no-credentials", "no-network"],
)
def test_cannot_run_in_a_subprocess_prints_one_line(
    tmp_path: Path, extra: dict[str, str], words: str
) -> None:
    done = _imagegen(["doctor", "--region", "us-west-2"], _scrubbed_env(tmp_path, **extra))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stdout == ""
    assert done.stderr.startswith(f"imagegen doctor: {words}") and done.stderr.count("\n") == 1


def test_no_region_is_one_line(tmp_path: Path) -> None:
    done = _imagegen(["doctor"], _scrubbed_env(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        done.stderr
        == "imagegen doctor: no AWS Region: pass --region or set AWS_REGION (or region in ~/.aws/config)\n"
    )
