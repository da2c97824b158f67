"""The stack as deployed has batch generation and monitoring wired in: the batch workflow started by
uploads to the images bucket, and alarms and a dashboard over every workflow, function and the API."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match

from stacks.batch import HANDLERS as BATCH_HANDLERS
from stacks.batch import UPLOAD_KEYS
from tests.infra.synthesis import Synthesized

DEPLOYMENTS = ("synthesized", "variant")


def logical_id(synth: Synthesized, construct: Any) -> str:
    return synth.stack.resolve(construct.node.default_child.logical_id)


def function_env(synth: Synthesized, handler: str) -> dict[str, str]:
    (fn,) = [
        f
        for f in synth.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == handler
    ]
    return fn["Properties"]["Environment"]["Variables"]


def alarms(synth: Synthesized) -> list[dict[str, Any]]:
    return [a["Properties"] for a in synth.resources("AWS::CloudWatch::Alarm").values()]


@pytest.mark.parametrize("which", DEPLOYMENTS)
def test_the_images_bucket_sends_its_events_to_eventbridge(
    which: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    images = logical_id(synth, synth.stack.storage.images_bucket)
    (notifications,) = synth.resources("Custom::S3BucketNotifications").values()
    assert notifications["Properties"]["BucketName"] == {"Ref": images}
    assert notifications["Properties"]["NotificationConfiguration"] == {"EventBridgeConfiguration": {}}


@pytest.mark.parametrize("which", DEPLOYMENTS)
def test_an_upload_of_a_jsonl_file_under_batches_starts_the_batch_workflow(
    which: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    images = logical_id(synth, synth.stack.storage.images_bucket)
    batch = logical_id(synth, synth.stack.batch.state_machine)
    synth.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {
                    "bucket": {"name": [{"Ref": images}]},
                    "object": {"key": [{"wildcard": UPLOAD_KEYS}]},
                },
            },
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {"Ref": batch},
                        "DeadLetterConfig": {
                            "Arn": {"Fn::GetAtt": [logical_id(synth, synth.stack.events.dead_letters), "Arn"]}
                        },
                    }
                )
            ],
        },
    )
    machine = synth.resources("AWS::StepFunctions::StateMachine")[batch]["Properties"]
    assert machine["StateMachineType"] == "STANDARD"
    assert machine["TracingConfiguration"] == {"Enabled": True}
    jobs = logical_id(synth, synth.stack.workflow.standard)
    assert machine["DefinitionSubstitutions"]["RequestStateMachineArn"] == {"Ref": jobs}


@pytest.mark.parametrize(
    ("which", "concurrency", "tolerated"), [("synthesized", "4", "10"), ("variant", "2", "25")]
)
def test_batch_concurrency_and_tolerated_failures_come_from_the_context(
    which: str, concurrency: str, tolerated: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    env = function_env(synth, BATCH_HANDLERS["prepare_batch"])
    assert (env["BATCH_MAX_CONCURRENCY"], env["BATCH_TOLERATED_FAILURE_PERCENTAGE"]) == (
        concurrency,
        tolerated,
    )


@pytest.mark.parametrize("which", DEPLOYMENTS)
def test_every_state_machine_has_failure_timeout_and_throttle_alarms(
    which: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    stack = synth.stack
    for machine in (stack.workflow.standard, stack.batch.state_machine):
        ref = {"Ref": logical_id(synth, machine)}
        metrics = {
            a["MetricName"]
            for a in alarms(synth)
            if a.get("Namespace") == "AWS/States"
            and {"Name": "StateMachineArn", "Value": ref} in a["Dimensions"]
        }
        assert {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionThrottled"} <= metrics, metrics


@pytest.mark.parametrize("which", DEPLOYMENTS)
def test_every_function_has_error_and_throttle_alarms(which: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    stack = synth.stack
    steps = (*stack.workflow.functions, stack.api.http_api, *stack.batch.functions)
    assert len(steps) == 7  # validate, admission (issue 15), generate, manifest, http api, 2 batch
    for step in steps:
        ref = {"Ref": logical_id(synth, step.function)}
        metrics = {
            a["MetricName"]
            for a in alarms(synth)
            if a.get("Namespace") == "AWS/Lambda"
            and {"Name": "FunctionName", "Value": ref} in a["Dimensions"]
        }
        assert {"Errors", "Throttles"} <= metrics, (step.node.id, metrics)


@pytest.mark.parametrize("which", DEPLOYMENTS)
def test_throttled_images_and_api_5xx_alarm_and_every_alarm_notifies_the_topic(
    which: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesized = request.getfixturevalue(which)
    topic = logical_id(synth, synth.stack.monitoring.topic)
    found = alarms(synth)
    assert any(a.get("Namespace") == "imagegen" and a["MetricName"] == "ImagesThrottled" for a in found)
    assert any(a.get("Namespace") == "AWS/ApiGateway" and a["MetricName"] == "5XXError" for a in found)
    assert all(a["AlarmActions"] == [{"Ref": topic}] for a in found), [a["AlarmActions"] for a in found]
    assert all(a["TreatMissingData"] == "notBreaching" for a in found)
    assert len(synth.resources("AWS::CloudWatch::Dashboard")) == 1


def test_the_alarm_topic_has_an_email_subscription_only_when_configured(
    synthesized: Synthesized, variant: Synthesized
) -> None:
    assert synthesized.resources("AWS::SNS::Subscription") == {}
    (subscription,) = variant.resources("AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "ops@example.com"
    assert subscription["Properties"]["TopicArn"] == {
        "Ref": logical_id(variant, variant.stack.monitoring.topic)
    }


def test_outputs_name_the_batch_upload_place_the_dashboard_and_the_topic(synthesized: Synthesized) -> None:
    outputs = synthesized.template_json["Outputs"]
    assert {"BatchStateMachineArn", "BatchUploadKeys", "AlarmTopicArn", "DashboardUrl"} <= set(outputs)
    upload = synthesized.stack.resolve(outputs["BatchUploadKeys"]["Value"])
    assert upload["Fn::Join"][1][-1].endswith(f"/{UPLOAD_KEYS}")
