"""Batch generation: a JSONL file uploaded under ``batches/`` runs one request per line.

``statemachine/batch_generate.asl.json`` is the batch workflow, a STANDARD state machine loaded with
``DefinitionBody.from_file``; CloudFormation fills its ``${...}`` placeholders from
:attr:`BatchConstruct.definition_substitutions`. Its steps and what each may do:

* ``prepare_batch`` (Lambda): ``s3:GetObject`` on ``batches/*`` (the uploaded file) and ``s3:PutObject``
  on ``batch-results/*`` (``items.json``); ``BATCH_*`` variables cap the Distributed Map's concurrency
  and set the default tolerated failure percentage.
* The Distributed Map: reads ``items.json`` (``s3:GetObject`` on ``batch-results/*``), writes its
  ResultWriter files there (``s3:PutObject``, multipart), starts and watches the child executions of
  the per-request Standard workflow (``states:StartExecution`` on it; ``states:DescribeExecution`` /
  ``states:StopExecution`` on its executions; ``events:PutTargets/PutRule/DescribeRule`` on the managed
  rule ``StepFunctionsGetEventsForStepFunctionsExecutionRule`` that ``.sync`` integrations use), and its
  own map-run child workflows (``states:StartExecution`` on itself, ``DescribeExecution`` /
  ``StopExecution`` on its executions, ``RedriveExecution`` on the map run's): the latter in a separate
  policy, as the CDK's own DistributedMap does, since the state machine cannot depend on a policy
  that names it.
* ``build_batch_manifest`` (Lambda): ``states:DescribeExecution`` on the per-request workflow's
  executions; ``s3:GetObject`` on ``batch-results/*`` and ``*/manifest.json`` (requests that failed after
  storing their manifest), ``s3:ListBucket`` (a missing manifest is then a 404, not a 403);
  ``s3:PutObject`` on ``batch-results/*``.

An EventBridge rule on the default bus starts the batch for every S3 "Object Created" event of
``batches/*.jsonl`` in the bucket, with ``{"bucket", "key"}`` as input. **The bucket must send its
events to EventBridge** (``s3.Bucket(..., event_bridge_enabled=True)``). Undeliverable starts land in
a dead-letter queue. Logs: every event, without execution data (no prompts), in a log group under
``/aws/vendedlogs/states/`` (:func:`stacks.workflow.vended_log_group`); X-Ray tracing on.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from image_pipeline.core.keys import BATCH_PREFIX, BATCH_SUFFIX, RESULTS_PREFIX
from image_pipeline.core.settings import BatchSettings
from image_pipeline.functions import BATCH_FUNCTIONS, BUILD_BATCH_MANIFEST, PREPARE_BATCH

from stacks.functions import FunctionDefaults, PipelineFunction, arn_substitutions
from stacks.workflow import vended_log_group

#: The batch workflow definition (JSONPath ASL, placeholders only inside strings).
BATCH_ASL_FILE = Path(__file__).resolve().parent.parent / "statemachine" / "batch_generate.asl.json"
#: Handler module -> dotted handler path of the batch's two functions (``image_pipeline.functions``).
HANDLERS = {function.module: function.handler for function in BATCH_FUNCTIONS}
#: The managed rule through which ``.sync`` integrations learn that a child execution ended.
SYNC_EVENTS_RULE = "StepFunctionsGetEventsForStepFunctionsExecutionRule"
#: The Distributed Map's ``Label`` in the ASL (its map-run executions are ``<machine>/<label>:<id>``).
MAP_LABEL = "Requests"
#: Uploads that start a batch, and where a batch writes (its items, ResultWriter files, manifest).
UPLOAD_KEYS = f"{BATCH_PREFIX}*{BATCH_SUFFIX}"
UPLOADED_FILES = f"{BATCH_PREFIX}*"
RESULT_FILES = f"{RESULTS_PREFIX}*"
REQUEST_MANIFESTS = "*/manifest.json"


class BatchConstruct(Construct):
    """The batch state machine, its two functions and the rule that starts it on upload.

    :param bucket: where batch files are uploaded (``batches/``) and results written (the images bucket;
        it must have ``event_bridge_enabled=True``).
    :param per_request_state_machine: the per-request STANDARD workflow each line runs as.
    :param defaults: the functions' shared code, layers and environment.
    :param max_concurrency: requests of a batch running at once (the Map's ``MaxConcurrency``). Each runs
        up to ``MAP_MAX_CONCURRENCY`` images at once: keep the product under the model's Bedrock quota.
    :param tolerated_failure_percentage: default share of lines that may fail before the batch fails.
    :param max_lines: request lines accepted in one file.
    :param dead_letter_queue: where undeliverable starts go (default: a queue of this construct).
    :param definition_file: the ASL file (default: ``statemachine/batch_generate.asl.json``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        per_request_state_machine: sfn.IStateMachine,
        defaults: FunctionDefaults,
        max_concurrency: int = 10,
        tolerated_failure_percentage: float = 10.0,
        max_lines: int = 10_000,
        dead_letter_queue: sqs.IQueue | None = None,
        definition_file: Path = BATCH_ASL_FILE,
    ) -> None:
        super().__init__(scope, construct_id)
        settings = BatchSettings(
            max_concurrency=max_concurrency,
            tolerated_failure_percentage=tolerated_failure_percentage,
            max_lines=max_lines,
        )  # the handlers' own validation, at synthesis
        self.prepare = PipelineFunction(
            self,
            "PrepareBatch",
            spec=PREPARE_BATCH,
            description="imagegen batch: read the JSONL file, write one Map item per line",
            defaults=defaults,
            memory_size=512,
            timeout=Duration.seconds(110),  # the Task state allows 120 s
            environment=settings.to_environment(),
        )
        self.build_manifest = PipelineFunction(
            self,
            "BuildBatchManifest",
            spec=BUILD_BATCH_MANIFEST,
            description="imagegen batch: describe every line's execution, write batch_manifest.json",
            defaults=defaults,
            memory_size=512,
            timeout=Duration.seconds(890),  # the Task state allows 900 s
        )
        self.functions = (self.prepare, self.build_manifest)
        stack = Stack.of(self)
        request_machine_name = stack.split_arn(
            per_request_state_machine.state_machine_arn, ArnFormat.COLON_RESOURCE_NAME
        ).resource_name
        #: Every execution of the per-request workflow (what the batch describes and stops).
        self.request_executions_arn = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{request_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self._grant_functions(bucket)

        #: ASL placeholder -> value; CloudFormation substitutes them into the definition.
        self.definition_substitutions: dict[str, str] = {
            **arn_substitutions(self.functions),
            "RequestStateMachineArn": per_request_state_machine.state_machine_arn,
            "ResultsBucketName": bucket.bucket_name,
        }
        self.log_group = vended_log_group(self, "StateMachine")
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment="imagegen batch: one request per line of batches/*.jsonl, then batch_manifest.json",
            definition_body=sfn.DefinitionBody.from_file(str(definition_file)),
            definition_substitutions=self.definition_substitutions,
            state_machine_type=sfn.StateMachineType.STANDARD,
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False
            ),
            tracing_enabled=True,
        )
        self._grant_state_machine(bucket, per_request_state_machine)

        self.dead_letters = dead_letter_queue or sqs.Queue(
            self,
            "UndeliveredUploads",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.rule = events.Rule(
            self,
            "StartOnUpload",
            description=f"S3 Object Created {UPLOAD_KEYS} -> the batch workflow, input {{bucket, key}}",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [bucket.bucket_name]},
                    "object": {"key": events.Match.wildcard(UPLOAD_KEYS)},
                },
            ),
            targets=[
                targets.SfnStateMachine(
                    self.state_machine,
                    input=events.RuleTargetInput.from_object(
                        {
                            "bucket": events.EventField.from_path("$.detail.bucket.name"),
                            "key": events.EventField.from_path("$.detail.object.key"),
                        }
                    ),
                    dead_letter_queue=self.dead_letters,
                    retry_attempts=8,
                    max_event_age=Duration.hours(2),
                )
            ],
        )

    def _grant_functions(self, bucket: s3.IBucket) -> None:
        prepare = self.prepare.role
        prepare.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadBatchFiles",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(UPLOADED_FILES)],
            )
        )
        prepare.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ListBucket", actions=["s3:ListBucket"], resources=[bucket.bucket_arn]
            )  # a missing file is a 404, not a 403
        )
        prepare.add_to_principal_policy(
            iam.PolicyStatement(
                sid="WriteBatchItems",
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects(RESULT_FILES)],
            )
        )
        manifest = self.build_manifest.role
        manifest.add_to_principal_policy(
            iam.PolicyStatement(
                sid="DescribeRequests",
                actions=["states:DescribeExecution"],
                resources=[self.request_executions_arn],
            )
        )
        manifest.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadItemsAndManifests",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(RESULT_FILES), bucket.arn_for_objects(REQUEST_MANIFESTS)],
            )
        )
        manifest.add_to_principal_policy(
            iam.PolicyStatement(sid="ListBucket", actions=["s3:ListBucket"], resources=[bucket.bucket_arn])
        )
        manifest.add_to_principal_policy(
            iam.PolicyStatement(
                sid="WriteBatchManifest",
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects(RESULT_FILES)],
            )
        )

    def _grant_state_machine(self, bucket: s3.IBucket, requests: sfn.IStateMachine) -> None:
        machine = self.state_machine
        for step in self.functions:
            step.function.grant_invoke(machine)
        machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadItemsWriteResults",
                actions=[
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:ListMultipartUploadParts",
                    "s3:AbortMultipartUpload",
                ],
                resources=[bucket.arn_for_objects(RESULT_FILES)],
            )
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="StartRequests", actions=["states:StartExecution"], resources=[requests.state_machine_arn]
            )
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="WatchRequests",
                actions=["states:DescribeExecution", "states:StopExecution"],
                resources=[self.request_executions_arn],
            )
        )
        machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="SyncExecutionEvents",
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    Stack.of(self).format_arn(
                        service="events", resource="rule", resource_name=SYNC_EVENTS_RULE
                    )
                ],
            )
        )
        # The Distributed Map runs its iterations as child workflows of this very state machine.
        self.map_run_policy = iam.Policy(self, "DistributedMapPolicy")
        machine.role.attach_inline_policy(self.map_run_policy)
        machine.grant_start_execution(self.map_run_policy)
        machine.grant_execution(self.map_run_policy, "states:DescribeExecution", "states:StopExecution")
        self.map_run_policy.add_statements(
            iam.PolicyStatement(
                actions=["states:RedriveExecution"],
                resources=[
                    Stack.of(self).format_arn(
                        service="states",
                        resource="execution",
                        resource_name=f"{machine.state_machine_name}/{MAP_LABEL}:*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
