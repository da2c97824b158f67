"""The events construct (``stacks/events.py``) in the synthesized stack: request events start the jobs
workflow."""

from __future__ import annotations

from aws_cdk.assertions import Match
from image_pipeline.core.events import REQUEST_EVENT

from tests.infra.stack_template import state_machine_id
from tests.infra.synthesis import Synthesized


def test_request_events_start_the_standard_workflow_with_the_detail(synthesized: Synthesized) -> None:
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
                        "InputPath": "$.detail",
                        "DeadLetterConfig": {"Arn": {"Fn::GetAtt": [Match.any_value(), "Arn"]}},
                        "RetryPolicy": Match.object_like({"MaximumRetryAttempts": 8}),
                    }
                )
            ],
        },
    )
