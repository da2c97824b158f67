"""The workflow: three Lambda functions and the state machine built from the one ASL file.

``statemachine/generate_images.asl.json`` is the workflow. It is loaded as it is with
``DefinitionBody.from_file``; CloudFormation fills its ``${...}`` placeholders from
:attr:`ImageWorkflow.definition_substitutions` (the functions' ARNs and the event bus name). It runs
as one STANDARD state machine for every entry point: the API's synchronous routes (which wait for
their job, and hand it over with a 202 when it takes longer), jobs, the console, EventBridge and
batches. Every run is a job: exactly-once, idempotent on the execution name, listed, cancellable and
visible in the console history for 90 days (docs/decisions.md: why no Express state machine).

It logs every event to CloudWatch Logs without execution data (prompts stay out of the logs), in log
groups named under ``/aws/vendedlogs/states/`` (:func:`vended_log_group`), and trace with X-Ray. Each
function gets only what its step does:

* ``validate_request``: ``s3:GetObject`` on ``*.png`` keys (the stored images an operation names:
  their owner, size and, for a mask, pixels are checked before anything runs);
* ``generate_image``: ``bedrock:InvokeModel`` on the foundation models this deployment allows (or their
  inference profiles and the models behind them, ``stacks/model_access.py``), the Marketplace actions of a
  third-party model's first call when an allowed model is one,
  ``s3:PutObject`` on ``*.png`` keys of the images bucket, and ``s3:ListBucket`` under
  ``cancellations/`` (it looks for its job's cancellation before calling the model); its
  ``s3:GetObject`` on ``*.png`` keys only (a cached image to copy, the stored images an operation reads)
  is granted where the stack composes it;
* ``admission``: ``s3:ListBucket`` under ``cancellations/`` (a waiting branch of a cancelled job stops
  waiting); ``stacks/admission.py`` grants it its table where the stack composes them;
* ``build_manifest``: ``s3:GetObject`` on ``*.png`` keys (check images, presign URLs), ``s3:PutObject``
  on ``*/manifest.json`` keys, and ``s3:ListBucket`` (a missing image is then a 404, not a 403).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Duration, Names
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from image_pipeline.core import time_budget
from image_pipeline.core.keys import CANCELLATIONS_PREFIX
from image_pipeline.core.settings import Settings
from image_pipeline.functions import (
    ADMISSION,
    BUILD_MANIFEST,
    GENERATE_IMAGE,
    VALIDATE_REQUEST,
    WORKFLOW_FUNCTIONS,
)
from image_pipeline.models.facts import Offer

from stacks.functions import LOG_RETENTION, FunctionDefaults, PipelineFunction, arn_substitutions
from stacks.model_access import MarketplaceFirstUse, grant_marketplace_first_use, grant_model_invocation

#: The workflow definition (JSONPath ASL, placeholders only inside strings).
ASL_FILE = Path(__file__).resolve().parent.parent / "statemachine" / "generate_images.asl.json"

#: Handler module -> dotted handler path of the three Task functions (``image_pipeline.functions``).
HANDLERS = {function.module: function.handler for function in WORKFLOW_FUNCTIONS}
#: S3 keys each step writes or reads (see ``image_pipeline.core.keys``).
IMAGE_KEYS = "*.png"
MANIFEST_KEYS = "*/manifest.json"
#: Cancellation markers, ``cancellations/<execution name>`` (``image_pipeline.core.cancellation``).
CANCELLATION_KEYS = f"{CANCELLATIONS_PREFIX}*"
#: The state machines' log groups are named under this prefix. AWS: "CloudWatch Logs resource policies
#: are limited to 5120 characters. When CloudWatch Logs detects that a policy approaches this size limit,
#: it automatically enables log groups that start with /aws/vendedlogs/ ... prefix your CloudWatch Logs
#: log group names with /aws/vendedlogs/"; the Step Functions console uses /aws/vendedlogs/states
#: (https://docs.aws.amazon.com/step-functions/latest/dg/bp-cwl.html, read 2026-11-30).
VENDED_LOGS_PREFIX = "/aws/vendedlogs/states/"
#: The functions' timeouts. Each holds its worst case (``image_pipeline.core.time_budget``; checked
#: below at synthesis and by tests/infra/test_time_budget.py) and fits in its Task state's
#: ``TimeoutSeconds`` in the ASL with Lambda's 10 s Init phase to spare.
VALIDATE_REQUEST_TIMEOUT = Duration.seconds(20)  # the Task state allows 30 s
GENERATE_IMAGE_TIMEOUT = Duration.seconds(345)  # the Task state allows 355 s
BUILD_MANIFEST_TIMEOUT = Duration.seconds(420)  # the Task state allows 430 s
ADMISSION_TIMEOUT = Duration.seconds(130)  # ReleaseSlot allows 140 s, AcquireSlot (with its wait) 300 s
#: The memory of the functions that check an inpaint mask's pixels (ValidateRequest, the HTTP API): one
#: vCPU, so the largest mask's check takes ``time_budget.mask_check_seconds`` (9.4 s) rather than 7 times
#: that at the default 256 MB (docs/decisions.md, "The mask check's time").
MASK_CHECK_MEMORY_MB = time_budget.LAMBDA_MB_PER_VCPU


def vended_log_group(scope: Construct, construct_id: str) -> logs.LogGroup:
    """A state machine's log group (id ``<construct_id>Logs``), named
    ``/aws/vendedlogs/states/<stack>-<construct path>-<hash>-<construct_id>``: unique per stack."""
    unique = Names.unique_resource_name(scope, separator="-", max_length=200)
    name = f"{VENDED_LOGS_PREFIX}{unique}-{construct_id}"
    return logs.LogGroup(scope, f"{construct_id}Logs", log_group_name=name, retention=LOG_RETENTION)


def check_time_budget(settings: Settings) -> None:
    """Fail synthesis when the model call's worst case under ``settings`` (``imagegen:bedrockMaxAttempts``
    is CDK context) outlasts GenerateImage's timeout: a hung model call must end as ``ModelTimeout``,
    not as a Lambda timeout. (BuildManifest's worst case depends on no setting beyond the 40 images a
    request can have; tests/infra/test_time_budget.py checks it.)"""
    problem = time_budget.over_budget(
        "GenerateImage",
        time_budget.generate_image_bound(settings),
        GENERATE_IMAGE_TIMEOUT.to_seconds(),
        f"Bedrock {time_budget.bedrock(settings).describe()}; S3 {time_budget.S3.describe()}",
    )
    if problem:
        raise ValueError(
            f"{problem}: lower imagegen:bedrockMaxAttempts (BEDROCK_MAX_ATTEMPTS) or "
            "BEDROCK_READ_TIMEOUT_SECONDS, or raise GenerateImage's timeout (stacks/workflow.py) and its "
            "Task state's TimeoutSeconds (statemachine/generate_images.asl.json) together"
        )


class ImageWorkflow(Construct):
    """The functions of the three Task states and the Standard state machine every entry point runs.

    :param images_bucket: where images and manifests are written.
    :param event_bus: where the workflow publishes its outcome events.
    :param models: how the generate step invokes each allowed model from the stack's Region (model id,
        or inference profile id: ``image_pipeline.models.facts.Offer``); IAM allows exactly these.
    :param marketplace_first_use: the generate step's Marketplace grant for a third-party model's
        first call (``stacks.model_access``): ``viaBedrock``, ``unconditional`` or ``off``.
    :param defaults: the functions' shared code, layers and environment.
    :param definition_file: the ASL file (default: ``statemachine/generate_images.asl.json``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        images_bucket: s3.IBucket,
        event_bus: events.IEventBus,
        models: Sequence[Offer],
        defaults: FunctionDefaults,
        marketplace_first_use: MarketplaceFirstUse = "off",
        definition_file: Path = ASL_FILE,
    ) -> None:
        super().__init__(scope, construct_id)
        if not models:
            raise ValueError("models is empty: the workflow could not invoke any model")
        check_time_budget(Settings.from_environ(defaults.environment))

        self.validate_request = PipelineFunction(
            self,
            "ValidateRequest",
            spec=VALIDATE_REQUEST,
            description="imagegen: validate a request for its model and plan one branch per image",
            defaults=defaults,
            memory_size=MASK_CHECK_MEMORY_MB,
            timeout=VALIDATE_REQUEST_TIMEOUT,
        )
        self.generate_image = PipelineFunction(
            self,
            "GenerateImage",
            spec=GENERATE_IMAGE,
            description="imagegen: one image from Amazon Bedrock, stored in S3 as PNG",
            defaults=defaults,
            memory_size=512,
            timeout=GENERATE_IMAGE_TIMEOUT,
        )
        self.build_manifest = PipelineFunction(
            self,
            "BuildManifest",
            spec=BUILD_MANIFEST,
            description="imagegen: check the stored images, write manifest.json, presign URLs",
            defaults=defaults,
            timeout=BUILD_MANIFEST_TIMEOUT,
        )
        #: AcquireSlot / ReleaseSlot: a slot of the model's admission control (``stacks/admission.py``
        #: grants it the table where the stack composes them).
        self.admission = PipelineFunction(
            self,
            "Admission",
            spec=ADMISSION,
            description="imagegen: take or give back a slot of the model's calls in flight",
            defaults=defaults,
            timeout=ADMISSION_TIMEOUT,
        )
        self.functions = (self.validate_request, self.admission, self.generate_image, self.build_manifest)

        grant_model_invocation(self.generate_image.role, models)
        #: The Marketplace grant of a third-party model's first call (None: not granted).
        self.marketplace_policy = grant_marketplace_first_use(
            self, "MarketplaceFirstUse", self.generate_image.role, marketplace_first_use
        )
        self.generate_image.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PutImages",
                actions=["s3:PutObject"],
                resources=[images_bucket.arn_for_objects(IMAGE_KEYS)],
            )
        )
        # GenerateImage looks for its job's cancellation before the call; Admission when a branch waits
        for looking in (self.generate_image, self.admission):
            looking.role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="LookForCancellation",
                    actions=["s3:ListBucket"],
                    resources=[images_bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [CANCELLATION_KEYS]}},
                )
            )
        # An operation on a stored image: the first step checks each image the request names (the
        # caller's, there, of sizes the model takes) before anything runs; images only, no listing.
        self.validate_request.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadSourceImages",
                actions=["s3:GetObject"],
                resources=[images_bucket.arn_for_objects(IMAGE_KEYS)],
            )
        )
        manifest_role = self.build_manifest.role
        manifest_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadImages",
                actions=["s3:GetObject"],
                resources=[images_bucket.arn_for_objects(IMAGE_KEYS)],
            )
        )
        manifest_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="PutManifests",
                actions=["s3:PutObject"],
                resources=[images_bucket.arn_for_objects(MANIFEST_KEYS)],
            )
        )
        manifest_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ListImages", actions=["s3:ListBucket"], resources=[images_bucket.bucket_arn]
            )
        )

        #: ASL placeholder -> value; CloudFormation substitutes them into the definition.
        self.definition_substitutions: dict[str, str] = {
            **arn_substitutions(self.functions),
            "EventBusName": event_bus.event_bus_name,
        }
        self.standard = self._state_machine("Jobs", sfn.StateMachineType.STANDARD, definition_file, event_bus)

    def _state_machine(
        self,
        construct_id: str,
        kind: sfn.StateMachineType,
        definition_file: Path,
        event_bus: events.IEventBus,
    ) -> sfn.StateMachine:
        log_group = vended_log_group(self, construct_id)
        machine = sfn.StateMachine(
            self,
            construct_id,
            definition_body=sfn.DefinitionBody.from_file(str(definition_file)),
            definition_substitutions=self.definition_substitutions,
            state_machine_type=kind,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            tracing_enabled=True,
        )
        for step in self.functions:
            step.function.grant_invoke(machine)
        event_bus.grant_put_events_to(machine)
        return machine
