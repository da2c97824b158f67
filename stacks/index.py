"""The image index: one DynamoDB table of every job and image (``image_pipeline.core.image_index``).

On-demand capacity (its writes follow the images, its reads the searches: no capacity to plan),
point-in-time recovery, encryption with a key of the account's own (AWS-managed KMS), and a TTL
attribute that deletes an item when the bucket's lifecycle deletes its image
(``imagegen:imageExpirationDays``). Its keys and global secondary indexes are the ones the Lambda package
declares (``core/image_index.py``: :data:`GSIS`), which the offline engine creates in moto too.

The table also holds each caller's daily spend ledger (``core/spend.py``: ``SPEND#<namespace>`` items,
which carry none of the GSIs' attributes, so no index sees them). The grants are the composing stack's (``stacks/imagegen_stack.py``): the workflow's functions write,
the image branch reads the cache's index, the HTTP API function reads its caller's items.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct
from image_pipeline.core.index_keys import GSIS, PK, SK, SPEND_PREFIX, TTL_ATTRIBUTE

#: What the spend ledger's users do (``core/spend.py``: a consistent read, a conditional update) and the
#: partition keys they may touch (IAM's ``dynamodb:LeadingKeys``: only the ledger's items, never an
#: image's or a job's).
SPEND_LEDGER_ACTIONS = ("dynamodb:GetItem", "dynamodb:UpdateItem")
SPEND_LEDGER_KEYS = f"{SPEND_PREFIX}*"


def _string(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


class ImageIndexTable(Construct):
    """The image index's table.

    :param destroy_on_removal: delete the table with the stack (otherwise it is retained, as the
        buckets are).
    """

    def __init__(self, scope: Construct, construct_id: str, *, destroy_on_removal: bool = False) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.TableV2(
            self,
            "Table",
            partition_key=_string(PK),
            sort_key=_string(SK),
            billing=dynamodb.Billing.on_demand(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            time_to_live_attribute=TTL_ATTRIBUTE,
            removal_policy=RemovalPolicy.DESTROY if destroy_on_removal else RemovalPolicy.RETAIN,
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=name,
                    partition_key=_string(pk),
                    sort_key=_string(sk) if sk else None,
                    projection_type=dynamodb.ProjectionType.ALL,
                )
                for name, (pk, sk) in GSIS.items()
            ],
        )
        #: The ARNs of the table's indexes (``<table>/index/*``): what the query grants name.
        self.indexes_arn = f"{self.table.table_arn}/index/*"
