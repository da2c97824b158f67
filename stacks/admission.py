"""Admission control: the DynamoDB table of the models' slots (``image_pipeline.core.admission``).

One item per model: the count of calls in flight and a lease per holder. On-demand capacity (a few
small conditional writes per image), point-in-time recovery off is not an option cdk-nag takes, so it
is on; encryption with the AWS-managed key. The slots are short-lived state: the table goes with the
stack (a slot left after a deletion would mean nothing).

:meth:`AdmissionControl.connect` is called where the parts meet (``stacks/imagegen_stack.py``): it
grants the Admission function the two actions it uses (``GetItem`` and ``UpdateItem``, on this table
only) and gives it the table's name and the models' calls in flight; :meth:`AdmissionControl.connect_release`
gives GenerateImage ``UpdateItem`` alone, to give its slot back right after the model's answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

#: The actions of ``core/admission.py``'s ``DynamoSlotStore``: take, give back, reclaim, wait (UpdateItem)
#: and a consistent read (GetItem).
SLOT_ACTIONS = ("dynamodb:GetItem", "dynamodb:UpdateItem")
#: GenerateImage gives its slot back right after the model's answer (``release_after_call``): a
#: conditional UpdateItem, nothing else.
RELEASE_ACTIONS = ("dynamodb:UpdateItem",)


class AdmissionControl(Construct):
    """The slots table.

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

    def connect(self, function: lambda_.Function) -> None:
        """Let ``function`` (the Admission step) take and give back slots, and tell it where and how many."""
        self.table.grant(function, *SLOT_ACTIONS)
        function.add_environment("ADMISSION_TABLE", self.table.table_name)
        function.add_environment("MODEL_CONCURRENCY", json.dumps(self.model_concurrency, sort_keys=True))

    def connect_release(self, function: lambda_.Function) -> None:
        """Let ``function`` (GenerateImage) give its branch's slot back as soon as the model answered."""
        self.table.grant(function, *RELEASE_ACTIONS)
        function.add_environment("ADMISSION_TABLE", self.table.table_name)
