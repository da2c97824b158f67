"""The monitoring construct, synthesized alone in a scratch stack: alarms, their topic, the dashboard."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk.assertions import Match, Template
from image_pipeline.core import observability

from stacks.monitoring import MonitoringConstruct
from tests.infra.synthesis import ENV, nag_findings


def scratch(outdir: Path, *, with_api: bool = True) -> tuple[cdk.App, cdk.Stack, MonitoringConstruct]:
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "MonitoringOnly", env=ENV)
    machines = {
        label: sfn.StateMachine(
            stack, label, definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(stack, f"{label}Pass"))
        )
        for label in ("Sync", "Jobs")
    }
    functions = [
        lambda_.Function(
            stack,
            name,
            code=lambda_.Code.from_inline("def handler(event, context): return event"),
            handler="index.handler",
            runtime=lambda_.Runtime.PYTHON_3_13,
        )
        for name in ("GenerateImage", "BuildManifest")
    ]
    api = None
    if with_api:
        api = apigw.RestApi(stack, "Api")
        api.root.add_method("GET", apigw.MockIntegration())
    dead = sqs.Queue(stack, "DeadDeliveries", enforce_ssl=True, encryption=sqs.QueueEncryption.SQS_MANAGED)
    monitoring = MonitoringConstruct(
        stack,
        "Monitoring",
        state_machines=machines,
        functions=functions,
        api=api,
        alarm_topic_email="ops@example.com",
        models=["stable-image-core", "nova-canvas"],
        dead_letter_queues={"WebhookDeliveries": dead},
    )
    return app, stack, monitoring


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Template, MonitoringConstruct]:
    _, stack, monitoring = scratch(tmp_path_factory.mktemp("cdk.out.monitoring"))
    return Template.from_stack(stack), monitoring


@pytest.fixture(scope="module")
def template(built: tuple[Template, MonitoringConstruct]) -> Template:
    return built[0]


def topic_id(template: Template) -> str:
    [found] = template.find_resources("AWS::SNS::Topic")
    return str(found)


def alarms_of(template: Template, props: Mapping[str, Any]) -> dict[str, Any]:
    return dict(template.find_resources("AWS::CloudWatch::Alarm", {"Properties": props}))


def test_alarms_cover_workflows_functions_images_and_api(built: tuple[Template, MonitoringConstruct]) -> None:
    template, monitoring = built
    assert sorted(monitoring.alarms) == sorted(
        [
            *(
                f"{m}{kind}"
                for m in ("Sync", "Jobs")
                for kind in ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsThrottled")
            ),
            *(f"{f}{kind}" for f in ("GenerateImage", "BuildManifest") for kind in ("Errors", "Throttles")),
            "ImagesThrottled",
            "Api5xx",
            "WebhookDeliveriesDeadLetters",
        ]
    )
    template.resource_count_is("AWS::CloudWatch::Alarm", 13)
    every = {
        "AlarmActions": [{"Ref": topic_id(template)}],
        "TreatMissingData": "notBreaching",
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "EvaluationPeriods": 1,
        "Period": 300,
    }
    assert len(alarms_of(template, every)) == 13
    assert len(alarms_of(template, {**every, "Statistic": "Sum"})) == 12  # counts; the queue's depth: Maximum


def test_a_dead_letter_queue_alarms_on_any_message_waiting(template: Template) -> None:
    """ApproximateNumberOfMessagesVisible > 0: its largest value in a period is at least 1."""
    [alarm] = alarms_of(
        template,
        {
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Statistic": "Maximum",
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        },
    ).values()
    [dimension] = alarm["Properties"]["Dimensions"]
    assert dimension["Name"] == "QueueName"
    assert dimension["Value"]["Fn::GetAtt"][1] == "QueueName"
    assert "redrive" in alarm["Properties"]["AlarmDescription"]


def test_workflow_alarms(template: Template) -> None:
    failed = alarms_of(
        template, {"Namespace": "AWS/States", "MetricName": "ExecutionsFailed", "Threshold": 5}
    )
    throttled = alarms_of(
        template, {"Namespace": "AWS/States", "MetricName": "ExecutionThrottled", "Threshold": 1}
    )
    timed_out = alarms_of(
        template, {"Namespace": "AWS/States", "MetricName": "ExecutionsTimedOut", "Threshold": 1}
    )
    assert len(failed) == len(throttled) == len(timed_out) == 2
    for alarm in failed.values():
        [dimension] = alarm["Properties"]["Dimensions"]
        assert dimension["Name"] == "StateMachineArn" and "Ref" in dimension["Value"]


def test_images_throttled_alarm_watches_the_handlers_metric(template: Template) -> None:
    [alarm] = alarms_of(
        template,
        {
            "Namespace": observability.NAMESPACE,
            "MetricName": observability.IMAGES_THROTTLED,
            "Dimensions": [{"Name": "service", "Value": observability.SERVICE}],
            "Threshold": 1,
        },
    ).values()
    assert "quota" in alarm["Properties"]["AlarmDescription"]


def test_function_and_api_alarms(template: Template) -> None:
    for metric in ("Errors", "Throttles"):
        found = alarms_of(template, {"Namespace": "AWS/Lambda", "MetricName": metric, "Threshold": 1})
        assert len(found) == 2
    api = alarms_of(template, {"Namespace": "AWS/ApiGateway", "MetricName": "5XXError", "Threshold": 1})
    assert len(api) == 1


def test_topic_is_encrypted_with_a_key_cloudwatch_may_use_and_ssl_only(template: Template) -> None:
    key_id = next(iter(template.find_resources("AWS::KMS::Key")))
    template.has_resource_properties(
        "AWS::SNS::Topic",
        {"KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}, "DisplayName": "imagegen alarms"},
    )
    template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "EnableKeyRotation": True,
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Sid": "CloudWatchAlarmsPublish",
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                                "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}},
                            }
                        )
                    ]
                )
            },
        },
    )
    template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                )
            }
        },
    )
    template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )


def dashboard_body(template: Template) -> str:
    [dashboard] = template.find_resources("AWS::CloudWatch::Dashboard").values()
    return json.dumps(dashboard["Properties"]["DashboardBody"])


def test_dashboard_shows_executions_images_latency_functions_api_and_alarms(template: Template) -> None:
    body = dashboard_body(template)
    for title in (
        "Sync executions",
        "Jobs executions",
        "Images",
        "Model latency (ms)",
        "Lambda errors and throttles",
        "Lambda duration p50 / p99 (ms)",
        "API requests and errors",
        "API latency p50 / p99 (ms)",
        "Alarms",
    ):
        assert title in body, title
    for name in (
        observability.IMAGES_GENERATED,
        observability.IMAGES_FILTERED,
        observability.IMAGES_FAILED,
        observability.IMAGES_THROTTLED,
    ):
        assert f'\\"imagegen\\",\\"{name}\\",\\"service\\",\\"imagegen\\"' in body
    assert (
        '\\"ModelLatency\\",\\"service\\",\\"imagegen\\",{\\"label\\":\\"ModelLatency p50\\",\\"stat\\":\\"p50\\"}'
        in body
    )
    assert '{\\"label\\":\\"ModelLatency p99\\",\\"stat\\":\\"p99\\"}' in body
    assert '\\"ModelLatency\\",\\"model\\",\\"nova-canvas\\",\\"service\\",\\"imagegen\\"' in body
    assert "ExecutionsStarted" in body and "Duration" in body


def test_without_an_api_there_is_no_api_alarm_or_row(tmp_path: Path) -> None:
    _, stack, monitoring = scratch(tmp_path, with_api=False)
    assert "Api5xx" not in monitoring.alarms
    assert "API requests" not in dashboard_body(Template.from_stack(stack))


def test_cdk_nag_finds_nothing_in_the_construct(tmp_path: Path) -> None:
    from cdk_nag import AwsSolutionsChecks

    app, stack, _ = scratch(tmp_path / "out", with_api=False)
    cdk.Validations.of(stack).add_plugins(AwsSolutionsChecks())
    try:
        app.synth()
    except Exception as exc:  # the scratch functions and state machines have findings of their own
        assert "ValidationFailed" in str(exc)
    ours = {
        (rule, path)
        for rule, paths in nag_findings(tmp_path / "out").items()
        for path in paths
        if path.startswith("MonitoringOnly/Monitoring/")
    }
    assert ours == set()
