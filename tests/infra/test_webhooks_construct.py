"""The signed webhooks construct (``stacks/webhooks.py``) in the synthesized stack: the secret (generated
by Secrets Manager, its ARN an output, never its value), the delivery queue and its dead-letter queue
(enough receives for the retry schedule, kept longer than it lasts), the rule that queues every ended
job, the delivery function (SQS event source, partial batch failures) and what it is granted."""

from __future__ import annotations

import json
from typing import Any

from image_pipeline.core.webhooks import BACKOFF_SECONDS, MAX_ATTEMPTS, retry_window_seconds

from stacks.webhooks import BATCH_SIZE, DELIVERY_TIMEOUT, SECRET_LENGTH
from tests.infra.stack_template import (
    granted,
    images_bucket_id,
    logical_id_where,
    state_machine_id,
    statements_of_role,
)
from tests.infra.synthesis import Synthesized

HANDLER = "image_pipeline.handlers.deliver_webhook.handler"


def _resource(synth: Synthesized, logical_id: str) -> dict[str, Any]:
    return dict(synth.template_json["Resources"][logical_id])


def _queues(synth: Synthesized) -> tuple[str, str]:
    """The delivery queue and its dead-letter queue."""
    delivery = next(
        k
        for k, v in synth.resources("AWS::SQS::Queue").items()
        if "RedrivePolicy" in v["Properties"]
        and v["Properties"]["RedrivePolicy"]["maxReceiveCount"] == MAX_ATTEMPTS
    )
    dead = _resource(synth, delivery)["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    return delivery, dead


def test_the_secret_is_generated_by_secrets_manager_and_only_its_arn_is_output(
    synthesized: Synthesized,
) -> None:
    secret = next(
        k
        for k, v in synth_secrets(synthesized).items()
        if "webhooks" in v["Properties"].get("Description", "")
    )
    generated = _resource(synthesized, secret)["Properties"]["GenerateSecretString"]
    assert generated["PasswordLength"] == SECRET_LENGTH and SECRET_LENGTH % 4 == 0  # valid base64
    assert generated["ExcludePunctuation"] is True
    assert "SecretString" not in _resource(synthesized, secret)["Properties"]
    output = synthesized.template_json["Outputs"]["WebhookSecretArn"]
    assert output["Value"] == {"Ref": secret}


def synth_secrets(synth: Synthesized) -> dict[str, Any]:
    return dict(synth.resources("AWS::SecretsManager::Secret"))


def test_the_queue_retries_for_more_than_a_day_then_dead_letters(synthesized: Synthesized) -> None:
    delivery, dead = _queues(synthesized)
    queue = _resource(synthesized, delivery)["Properties"]
    timeout = int(DELIVERY_TIMEOUT.to_seconds())
    assert queue["VisibilityTimeout"] == 6 * timeout  # Lambda's advice for an SQS event source
    assert retry_window_seconds() >= 24 * 3600
    assert queue["MessageRetentionPeriod"] > retry_window_seconds() + max(BACKOFF_SECONDS)
    assert queue["SqsManagedSseEnabled"] is True
    dead_queue = _resource(synthesized, dead)["Properties"]
    assert dead_queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert synthesized.template_json["Outputs"]["WebhookDeadLetterQueueArn"]["Value"] == {
        "Fn::GetAtt": [dead, "Arn"]
    }


def test_every_ended_job_is_queued_by_a_rule_on_the_default_bus(synthesized: Synthesized) -> None:
    delivery, dead = _queues(synthesized)
    standard = state_machine_id(synthesized, "STANDARD")
    (rule,) = [
        v["Properties"]
        for v in synthesized.resources("AWS::Events::Rule").values()
        if v["Properties"].get("EventPattern", {}).get("source") == ["aws.states"]
        and "SUCCEEDED" in v["Properties"]["EventPattern"].get("detail", {}).get("status", [])
    ]  # (admission control's rule on the same event takes only the ends without releases)
    assert "EventBusName" not in rule  # the default bus: where Step Functions sends its events
    assert rule["EventPattern"]["detail-type"] == ["Step Functions Execution Status Change"]
    assert rule["EventPattern"]["detail"] == {
        "stateMachineArn": [{"Ref": standard}],
        "status": ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"],
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [delivery, "Arn"]}
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": [dead, "Arn"]}
    policy = next(
        v["Properties"]["PolicyDocument"]
        for v in synthesized.resources("AWS::SQS::QueuePolicy").values()
        if {"Ref": delivery} in v["Properties"]["Queues"]
    )
    (allowed,) = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert allowed["Principal"] == {"Service": "events.amazonaws.com"}
    assert "sqs:SendMessage" in allowed["Action"]
    assert allowed["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [status_change_rule(synthesized), "Arn"]}}
    }


def status_change_rule(synth: Synthesized) -> str:
    """The webhooks' rule: every ended job (admission control's rule on the same event takes only the
    ends without releases, not SUCCEEDED)."""
    return next(
        k
        for k, v in synth.resources("AWS::Events::Rule").items()
        if v["Properties"].get("EventPattern", {}).get("source") == ["aws.states"]
        and "SUCCEEDED" in v["Properties"]["EventPattern"].get("detail", {}).get("status", [])
    )


def test_the_function_reads_the_queue_with_partial_batch_failures(synthesized: Synthesized) -> None:
    delivery, _ = _queues(synthesized)
    function = logical_id_where(synthesized, "AWS::Lambda::Function", Handler=HANDLER)
    (mapping,) = [
        v["Properties"]
        for v in synthesized.resources("AWS::Lambda::EventSourceMapping").values()
        if v["Properties"]["FunctionName"] == {"Ref": function}
    ]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [delivery, "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == BATCH_SIZE
    props = _resource(synthesized, function)["Properties"]
    assert props["Timeout"] == int(DELIVERY_TIMEOUT.to_seconds())
    env = props["Environment"]["Variables"]
    assert env["WEBHOOK_QUEUE_URL"] == {"Ref": delivery}
    assert env["WEBHOOK_MAX_ATTEMPTS"] == str(MAX_ATTEMPTS)
    assert env["WEBHOOK_NETWORK"] == "public"
    assert "Ref" in env["WEBHOOK_SECRET_ARN"]
    assert env["IMAGES_BUCKET"] == {"Ref": images_bucket_id(synthesized)}


def test_the_function_is_granted_what_it_calls_and_the_api_reads_the_records(
    synthesized: Synthesized,
) -> None:
    function = logical_id_where(synthesized, "AWS::Lambda::Function", Handler=HANDLER)
    role = _resource(synthesized, function)["Properties"]["Role"]["Fn::GetAtt"][0]
    actions = granted(statements_of_role(synthesized, role))
    bucket = images_bucket_id(synthesized)
    assert actions["s3:PutObject"] == {f"<{bucket}.Arn>/webhooks/*"}
    assert actions["s3:DeleteObject"] == {f"<{bucket}.Arn>/webhooks/*"}  # a claim given back
    assert actions["s3:GetObject"] == {f"<{bucket}.Arn>/webhooks/*", f"<{bucket}.Arn>/*.png"}
    assert "sqs:ChangeMessageVisibility" in actions and "sqs:SendMessage" in actions
    assert "secretsmanager:GetSecretValue" in actions
    assert actions["states:DescribeExecution"] and "states:StartExecution" not in actions
    http = logical_id_where(
        synthesized, "AWS::Lambda::Function", Handler="image_pipeline.handlers.http_api.handler"
    )
    http_role = _resource(synthesized, http)["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = statements_of_role(synthesized, http_role)
    assert f"<{bucket}.Arn>/webhooks/*" in granted(statements)["s3:GetObject"]
    (listing,) = [s for s in statements if s.get("Sid") == "ListDeliveryRecords"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["webhooks/*"]}}
    assert json.dumps(listing["Resource"]).count("Arn") == 1


def test_the_delivery_function_has_error_and_throttle_alarms(synthesized: Synthesized) -> None:
    function = logical_id_where(synthesized, "AWS::Lambda::Function", Handler=HANDLER)
    metrics = {
        a["Properties"]["MetricName"]
        for a in synthesized.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "AWS/Lambda"
        and {"Name": "FunctionName", "Value": {"Ref": function}} in a["Properties"]["Dimensions"]
    }
    assert {"Errors", "Throttles"} <= metrics


def test_the_image_function_queues_each_image_on_the_delivery_queue(synthesized: Synthesized) -> None:
    """Each image's delivery is queued by the branch that stored it: the image function knows the queue,
    may send to it (the queue's own grant) and claim the delivery's record, and nothing more of it."""
    delivery, _ = _queues(synthesized)
    function = logical_id_where(
        synthesized, "AWS::Lambda::Function", Handler="image_pipeline.handlers.generate_image.handler"
    )
    properties = _resource(synthesized, function)["Properties"]
    assert properties["Environment"]["Variables"]["WEBHOOK_QUEUE_URL"] == {"Ref": delivery}
    statements = statements_of_role(synthesized, properties["Role"]["Fn::GetAtt"][0])
    actions = granted(statements)
    assert actions["sqs:SendMessage"] == {f"<{delivery}.Arn>"}
    assert not {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"} & set(actions)
    bucket = images_bucket_id(synthesized)
    (claim,) = [s for s in statements if s.get("Sid") == "ClaimImageDeliveries"]
    assert sorted(claim["Action"]) == ["s3:DeleteObject", "s3:PutObject"]
    assert granted([claim])["s3:PutObject"] == {f"<{bucket}.Arn>/webhooks/*"}
    assert actions["s3:DeleteObject"] == {f"<{bucket}.Arn>/webhooks/*"}  # never an image


def test_the_dead_letter_queue_and_the_link_follower_have_alarms(synthesized: Synthesized) -> None:
    """An undelivered webhook waiting in the dead-letter queue alarms (its depth > 0), and so do errors
    of the function that follows lasting links (GET /links/{token})."""
    _, dead = _queues(synthesized)
    alarms = list(synthesized.resources("AWS::CloudWatch::Alarm").values())
    (depth,) = [
        a["Properties"]
        for a in alarms
        if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
    ]
    assert depth["Namespace"] == "AWS/SQS" and depth["Statistic"] == "Maximum" and depth["Threshold"] == 1
    assert depth["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert depth["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dead, "QueueName"]}}]
    assert depth["AlarmActions"]
    follower = logical_id_where(
        synthesized, "AWS::Lambda::Function", Handler="image_pipeline.handlers.follow_link.handler"
    )
    errors = [
        a["Properties"]
        for a in alarms
        if a["Properties"].get("MetricName") == "Errors"
        and {"Name": "FunctionName", "Value": {"Ref": follower}} in a["Properties"]["Dimensions"]
    ]
    assert len(errors) == 1 and errors[0]["Threshold"] == 1 and errors[0]["AlarmActions"]
