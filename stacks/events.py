"""The app's event bus: requests in, outcomes out.

* In: an ``ImageGenerationRequested`` event (any source) on the bus starts the Standard workflow with
  the envelope ``{"request": <the event's detail>, "caller": {"kind": "system", "id":
  "events:<the event's account>"}}`` (``image_pipeline.core.execution_input``): the request is the
  same JSON that ``POST /jobs`` and the console take, and the caller is written by the rule's input
  transformer, so nothing in the ``detail`` can name it. Events that cannot be delivered (after
  retries) land in a dead-letter queue.
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
from image_pipeline.core.tenancy import events_caller


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
        """Start ``state_machine`` for every ``ImageGenerationRequested`` event, with its detail as the
        request and the account that put the event as the caller."""
        return events.Rule(
            self,
            "StartOnRequest",
            description=f"{REQUEST_EVENT} -> the jobs workflow: request = the event's detail, "
            "caller = events:<its account>",
            event_bus=self.bus,
            event_pattern=events.EventPattern(detail_type=[REQUEST_EVENT]),
            targets=[
                targets.SfnStateMachine(
                    state_machine,
                    input=request_envelope(),
                    dead_letter_queue=self.dead_letters,
                    retry_attempts=8,
                    max_event_age=Duration.hours(2),
                )
            ],
        )


def request_envelope() -> events.RuleTargetInput:
    """The execution input of a request event: the envelope an entry point writes, the event's
    ``detail`` as the request and :func:`~image_pipeline.core.tenancy.events_caller` of its account."""
    return events.RuleTargetInput.from_object(
        {
            "request": events.EventField.from_path("$.detail"),
            "caller": events_caller(events.EventField.account).to_input(),
        }
    )
