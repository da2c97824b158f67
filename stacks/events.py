"""The app's event bus: requests in, outcomes out.

* In: an ``ImageGenerationRequested`` event (any source) on the bus starts the Standard workflow with
  the event's ``detail`` as input, the same JSON that ``POST /jobs`` and the console take. Events that
  cannot be delivered (after retries) land in a dead-letter queue.
* Out: the workflow itself puts ``ImageGenerationCompleted`` / ``ImageGenerationFailed`` (source
  ``imagegen``) on the same bus; subscribers add their own rules.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from image_pipeline.core.events import REQUEST_EVENT


class WorkflowEvents(Construct):
    """The event bus and the dead-letter queue of its rules."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.bus = events.EventBus(
            self, "Bus", description="imagegen: image generation requests and outcomes"
        )
        self.dead_letters = sqs.Queue(
            self,
            "UndeliveredRequests",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )

    def start_on_request(self, state_machine: sfn.IStateMachine) -> events.Rule:
        """Start ``state_machine`` for every ``ImageGenerationRequested`` event, with its detail."""
        return events.Rule(
            self,
            "StartOnRequest",
            description=f"{REQUEST_EVENT} -> the jobs workflow, input = the event's detail",
            event_bus=self.bus,
            event_pattern=events.EventPattern(detail_type=[REQUEST_EVENT]),
            targets=[
                targets.SfnStateMachine(
                    state_machine,
                    input=events.RuleTargetInput.from_event_path("$.detail"),
                    dead_letter_queue=self.dead_letters,
                    retry_attempts=8,
                    max_event_age=Duration.hours(2),
                )
            ],
        )
