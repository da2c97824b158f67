"""Admission control: the DynamoDB tables of the models' slots and of the branches waiting for one
(``image_pipeline.core.admission``).

Slots: one item per model, the count of calls in flight and a lease per holder. Waiters: one item per
waiting branch (partition key the model, sort key its place in the queue) with the task token its
``AcquireSlot`` state waits for; a ticket nobody served expires by TTL. On-demand capacity (a few small
conditional writes per image); point-in-time recovery off is not an option cdk-nag takes, so it is on;
encryption with the AWS-managed key. Both are short-lived state: they go with the stack.

:meth:`AdmissionControl.connect` is called where the parts meet (``stacks/imagegen_stack.py``) for the
Admission function and GenerateImage (which hands its slot on right after the model's answer): it
grants each the actions ``core/admission.DynamoSlotStore`` uses, on these tables only, gives them the
tables' names and the models' calls in flight, and attaches the policy that lets them wake a waiting
branch (``SendTaskSuccess`` with its task token). :meth:`AdmissionControl.keep` is the keeper's schedule;
:meth:`AdmissionControl.let_read_queues` lets the HTTP API read a queue's length and nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from image_pipeline.core.webhooks import STATUS_CHANGE

#: The actions of ``core/admission.py``'s ``DynamoSlotStore`` on the slots: take, give back, hand over,
#: reclaim (UpdateItem) and a consistent read (GetItem).
#: The Service Authorization Reference ("Actions, resources, and condition keys for Amazon DynamoDB",
#: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazondynamodb.html, read
#: 2026-11-30) lists GetItem, UpdateItem, PutItem, DeleteItem and Query each with the resource type
#: ``table*`` (the table's ARN; Query also takes an ``index``, which these tables have none of); a
#: ``ConditionExpression`` needs no other action, and ``ReturnValues`` (and a condition check failure's
#: ``ALL_OLD``) is only the condition key ``dynamodb:ReturnValues`` of the same action, not another grant.
SLOT_ACTIONS = ("dynamodb:GetItem", "dynamodb:UpdateItem")
#: ... and on the queue: a ticket put (PutItem) or put back, the oldest read (Query), a ticket claimed
#: (DeleteItem), the waiting counter (UpdateItem, GetItem).
QUEUE_ACTIONS = (
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:DeleteItem",
    "dynamodb:UpdateItem",
    "dynamodb:GetItem",
)
#: ... and to read a queue's length (the synchronous routes, ``core/admission_runtime.read_queue_estimate``):
#: the counter item beside the tickets.
QUEUE_LENGTH_ACTIONS = ("dynamodb:GetItem",)
#: Waking a waiting branch (https://docs.aws.amazon.com/step-functions/latest/apireference/API_SendTaskSuccess.html);
#: the three task-response actions, as the CDK's ``StateMachine.grant_task_response`` names them.
WAKE_ACTIONS = ("states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat")
#: The resource they are granted on. The Service Authorization Reference ("Actions, resources, and
#: condition keys for AWS Step Functions",
#: https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsstepfunctions.html, read
#: 2026-11-30) lists no resource type and no condition key for SendTaskSuccess, SendTaskFailure or
#: SendTaskHeartbeat, and says of such an action: "If there is no value for this column, you must specify
#: all resources ("*")". So not the state machine's ARN (which ``grant_task_response`` uses): what
#: limits the call is the task token, a secret only the waiting branch's ticket holds.
WAKE_RESOURCE = "*"
#: How often the keeper runs: EventBridge's shortest rate. A rate expression is ``rate(value unit)``, the
#: value a positive number and the unit ``minute | minutes | hour | hours | day | days``
#: (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rate-expressions.html, read 2026-11-30),
#: so ``rate(1 minute)`` is the shortest. A dead holder's slot reaches the queue at most this long after
#: its lease expired.
KEEPER_INTERVAL = Duration.minutes(1)
#: What the keeper's schedule sends the Admission function (``handlers/admission.py``).
KEEPER_EVENT = {"action": "sweep"}
#: The statuses of an execution that may have ended with branches holding slots or waiting for them
#: (https://docs.aws.amazon.com/step-functions/latest/apireference/API_DescribeExecution.html, read
#: 2026-11-30: RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE).
ENDED_WITHOUT_RELEASES = ("ABORTED", "TIMED_OUT", "FAILED")
#: The tickets' TTL attribute (``core/admission.DynamoSlotStore._ticket_item``).
TICKET_TTL_ATTRIBUTE = "expires_at"


class AdmissionControl(Construct):
    """The slots and the waiters tables, the policy that wakes a waiting branch, and the keeper.

    :param model_concurrency: calls in flight per model (``imagegen:modelConcurrency``); a model not
        named gets the conservative default of its documented quota (``core/admission.default_quota``).
    """

    def __init__(self, scope: Construct, construct_id: str, *, model_concurrency: Mapping[str, int]) -> None:
        super().__init__(scope, construct_id)
        self.model_concurrency = dict(model_concurrency)
        self.table = dynamodb.TableV2(
            self,
            "Slots",
            partition_key=dynamodb.Attribute(name="model", type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.waiters = dynamodb.TableV2(
            self,
            "Waiters",
            partition_key=dynamodb.Attribute(name="model", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="place", type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            time_to_live_attribute=TICKET_TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            removal_policy=RemovalPolicy.DESTROY,
        )
        #: Waking a waiting branch: a policy of its own, attached to each connected function's role, so
        #: cdk-nag's finding on its ``Resource: "*"`` (the only resource IAM takes for these actions) is
        #: acknowledged on this policy alone (``stacks/nag.py``), not on the roles' other grants.
        self.wake_policy = iam.Policy(
            self,
            "WakeWaitingBranches",
            statements=[iam.PolicyStatement(actions=list(WAKE_ACTIONS), resources=[WAKE_RESOURCE])],
        )

    def connect(self, function: lambda_.Function) -> None:
        """Let ``function`` take, give back and hand on slots, keep the queue and wake the branch it hands
        a slot to, and tell it where and how many."""
        self.table.grant(function, *SLOT_ACTIONS)
        self.waiters.grant(function, *QUEUE_ACTIONS)
        if function.role is not None:
            self.wake_policy.attach_to_role(function.role)
        function.add_environment("ADMISSION_TABLE", self.table.table_name)
        function.add_environment("ADMISSION_WAITERS_TABLE", self.waiters.table_name)
        function.add_environment("MODEL_CONCURRENCY", json.dumps(self.model_concurrency, sort_keys=True))

    def let_read_queues(self, function: lambda_.Function) -> None:
        """Let ``function`` (the HTTP API: its synchronous routes look before they wait) read how many
        branches wait in a model's queue: ``GetItem`` of the waiters table (its counter item,
        ``core/admission.DynamoSlotStore.waiting``), nothing of the slots; and tell it the tables (the
        slots' name is the switch that says admission control is on) and the models' calls in flight."""
        self.waiters.grant(function, *QUEUE_LENGTH_ACTIONS)
        function.add_environment("ADMISSION_TABLE", self.table.table_name)
        function.add_environment("ADMISSION_WAITERS_TABLE", self.waiters.table_name)
        function.add_environment("MODEL_CONCURRENCY", json.dumps(self.model_concurrency, sort_keys=True))

    def forget_ended(self, function: lambda_.Function, state_machine: sfn.IStateMachine) -> events.Rule:
        """When an execution of ``state_machine`` ends without its branches' releases (stopped, timed out,
        failed: Step Functions' "Execution Status Change" event on the default bus), ``function`` (the
        Admission function) gives its slots back to the queue at once and drops its tickets, instead of
        the leases' 30 minutes."""
        return events.Rule(
            self,
            "ForgetEndedExecutions",
            description="imagegen: an execution that ended without its releases gives its slots back",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=[STATUS_CHANGE],
                detail={
                    "stateMachineArn": [state_machine.state_machine_arn],
                    "status": list(ENDED_WITHOUT_RELEASES),
                },
            ),
            targets=[
                targets.LambdaFunction(
                    function,
                    event=events.RuleTargetInput.from_object(
                        {"action": "forget", "execution_name": events.EventField.from_path("$.detail.name")}
                    ),
                    retry_attempts=8,
                )
            ],
        )

    def keep(self, function: lambda_.Function) -> events.Rule:
        """The keeper: ``function`` (the Admission function) runs its ``sweep`` every minute, so a slot
        whose holder died is reclaimed for the queue once its lease expires (no release comes for it),
        and the tickets of cancelled jobs are woken."""
        return events.Rule(
            self,
            "Keeper",
            description="imagegen: admission control's keeper round (expired leases, cancelled jobs' tickets)",
            schedule=events.Schedule.rate(KEEPER_INTERVAL),
            targets=[
                targets.LambdaFunction(function, event=events.RuleTargetInput.from_object(KEEPER_EVENT))
            ],
        )
