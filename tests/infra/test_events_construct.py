"""The events construct (``stacks/events.py``) in the synthesized stack: request events start the jobs
workflow."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match
from image_pipeline.core.events import REQUEST_EVENT
from image_pipeline.core.execution_input import ExecutionInput, read_execution_input
from image_pipeline.core.tenancy import Caller, events_caller

from tests.infra.stack_template import state_machine_id
from tests.infra.synthesis import Synthesized
from tests.support import load_event


def test_request_events_start_the_standard_workflow_with_the_detail_and_their_account_as_caller(
    synthesized: Synthesized,
) -> None:
    """The rule's input transformer writes the envelope: the detail is the request, the caller is
    ``events:<account>`` (read from the event's envelope, never from its detail)."""
    standard = state_machine_id(synthesized, "STANDARD")
    bus = next(iter(synthesized.resources("AWS::Events::EventBus")))
    synthesized.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventBusName": {"Ref": bus},
            "EventPattern": {"detail-type": [REQUEST_EVENT]},
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {"Ref": standard},
                        "InputTransformer": {
                            "InputPathsMap": {"detail": "$.detail", "account": "$.account"},
                            "InputTemplate": '{"request":<detail>,'
                            '"caller":{"kind":"system","id":"events:<account>"}}',
                        },
                        "DeadLetterConfig": {"Arn": {"Fn::GetAtt": [Match.any_value(), "Arn"]}},
                        "RetryPolicy": Match.object_like({"MaximumRetryAttempts": 8}),
                    }
                )
            ],
        },
    )


def test_the_rules_envelope_is_the_one_the_offline_bus_and_the_validate_step_read(
    synthesized: Synthesized,
) -> None:
    """What the deployed rule starts the workflow with, for the canonical event, is the envelope
    ``put_request_event`` starts it with offline, and reads back as the event account's caller."""
    rule = next(iter(synthesized.resources("AWS::Events::Rule").values()))
    transformer = next(
        t["InputTransformer"] for t in rule["Properties"]["Targets"] if "InputTransformer" in t
    )
    event = load_event("eventbridge_request")
    rendered = transformer["InputTemplate"]
    for name, path in transformer["InputPathsMap"].items():
        value = event[path.removeprefix("$.")]
        rendered = rendered.replace(f"<{name}>", json.dumps(value) if isinstance(value, dict) else value)
    started = json.loads(rendered)
    assert started == ExecutionInput(event["detail"], events_caller(event["account"])).to_document()
    read = read_execution_input(started)
    assert read.request == event["detail"] and read.caller == Caller("system", "events:123456789012")
