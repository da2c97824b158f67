"""The offline engine: the project's ASL file and Lambda handlers, run on one machine.

* moto's Step Functions interpreter executes ``statemachine/generate_images.asl.json`` (the same file
  the CDK stack deploys, with the same ``${...}`` substitutions filled in);
* moto provides S3 (the images bucket) and DynamoDB (admission control's slots, one item per model);
* :class:`~imagegen.runtime.lambda_router.LambdaRouter` answers the interpreter's Lambda ``Invoke`` calls
  with the handler modules, in-process and unchanged;
* :class:`~imagegen.standin.bedrock_server.LocalBedrockServer` speaks the Bedrock Runtime InvokeModel
  protocol; the handlers reach it through ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``. It renders
  deterministic pictures from prompt and seed: it is a stand-in, not an image model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import string
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from image_pipeline.core.image_index import ImageIndex
from image_pipeline.core.index_keys import TTL_ATTRIBUTE, table_definition
from image_pipeline.core.jobs import execution_progress
from image_pipeline.core.lasting_links import LinkSettings, deployment_secret, link_settings
from image_pipeline.core.metric_names import NAMESPACE
from image_pipeline.core.settings import Settings, handler_environment
from image_pipeline.core.spend import SpendLedger
from image_pipeline.core.webhooks import WebhookSettings
from image_pipeline.functions import ADMISSION, BATCH_FUNCTIONS, WORKFLOW_FUNCTIONS

from imagegen.runtime import moto_speedups
from imagegen.runtime.batch import BatchRun, BatchSource, create_batch_state_machine, run_batch
from imagegen.runtime.lambda_router import LambdaRouter
from imagegen.runtime.moto_atomic_writes import atomic_writes
from imagegen.runtime.offline_account import (
    ACCOUNT,
    DEFAULT_BUCKET,
    EVENT_BUS,
    REGION,
    TERMINAL,
    ExecutionResult,
    Progress,
    asl_path,
    bucket_location,
    function_arn,
    substitute,
)
from imagegen.standin.bedrock_server import FaultPlan, LocalBedrockServer

#: Function name -> handler of the workflows' Task functions (``image_pipeline.functions``, the table
#: the CDK stack deploys from).
FUNCTIONS: dict[str, str] = {f.name: f.handler for f in (*WORKFLOW_FUNCTIONS, *BATCH_FUNCTIONS)}
#: ASL placeholder -> function name (the CDK stack substitutes the deployed ARNs the same way).
SUBSTITUTIONS: dict[str, str] = {f.placeholder: f.name for f in WORKFLOW_FUNCTIONS if f.placeholder}


@dataclass
class EngineConfig:
    """Settings of an offline engine (the Lambda environment it gives the handlers)."""

    bucket: str = DEFAULT_BUCKET
    default_model: str = "stable-image-core"
    allowed_models: str = ""
    max_images_per_request: int = 40
    map_max_concurrency: int = 40
    bedrock_max_attempts: int = 3
    presign_expiry_seconds: int = 3600
    log_level: str = "WARNING"
    bedrock_endpoint: str | None = None
    faults: FaultPlan = field(default_factory=FaultPlan)
    #: Admission control (``image_pipeline.core.admission``) on a moto DynamoDB table; False: off
    #: (every branch calls its model at once, as before issue 15).
    admission: bool = True
    #: Calls in flight per model for admission control (a model not named: its default).
    model_concurrency: dict[str, int] = field(default_factory=dict)
    #: Calls in flight per model the Bedrock stand-in answers; the rest get ThrottlingException.
    bedrock_quotas: dict[str, int] = field(default_factory=dict)
    admission_lease_seconds: int = 1800  # core/admission.DEFAULT_LEASE_SECONDS
    #: The image index's table in moto's DynamoDB (``image_pipeline.core.image_index``); empty: none.
    index_table: str = "imagegen-index"
    #: The prompt cache serves any caller's earlier image (CDK context ``imagegen:shareCache``).
    share_cache: bool = False
    image_expiration_days: int = 30
    #: Each caller's spend ceiling per UTC day (``imagegen serve --daily-spend-usd``; CDK context
    #: ``imagegen:dailySpendLimitUsd``); None: none.
    daily_spend_limit_usd: float | None = None
    #: Seconds between the admission keeper's rounds (deployed: a schedule every minute,
    #: ``stacks/admission.py``): expired leases reclaimed for the queue, cancelled jobs' tickets woken.
    keeper_interval_seconds: float = 1.0
    #: Apply ``imagegen.runtime.moto_speedups`` (also off with ``IMAGEGEN_MOTO_SPEEDUPS=0``).
    moto_speedups: bool = True
    #: How long the lasting links of the stored manifests and webhooks last (CDK context
    #: ``imagegen:linkLifetimeDays``; ``imagegen serve --link-lifetime-days``).
    link_lifetime_seconds: int = 30 * 24 * 3600

    def handler_settings(self) -> Settings:
        """The handlers' settings of this engine (``image_pipeline.core.settings``)."""
        return Settings.model_validate(
            {
                "images_bucket": self.bucket,
                "default_model": self.default_model,
                "allowed_models": self.allowed_models,
                "max_images_per_request": self.max_images_per_request,
                "map_max_concurrency": self.map_max_concurrency,
                "bedrock_max_attempts": self.bedrock_max_attempts,
                "presign_expiry_seconds": self.presign_expiry_seconds,
                "admission_table": ADMISSION_TABLE if self.admission else "",
                "admission_waiters_table": ADMISSION_WAITERS_TABLE if self.admission else "",
                "model_concurrency": self.model_concurrency,
                "admission_lease_seconds": self.admission_lease_seconds,
                "index_table": self.index_table,
                "share_cache": self.share_cache,
                "image_expiration_days": self.image_expiration_days,
                "daily_spend_limit_usd": self.daily_spend_limit_usd,
                "region": REGION,  # not written to the environment (AWS_REGION is _FAKE_AWS's)
            }
        )

    def lambda_environment(self, bedrock_endpoint: str) -> dict[str, str]:
        """The handlers' environment: :meth:`handler_settings` written as the CDK app writes them,
        with metrics and traces off and Bedrock at ``bedrock_endpoint``."""
        return {
            **handler_environment(self.handler_settings(), log_level=self.log_level),
            "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
            "POWERTOOLS_METRICS_DISABLED": "true",  # no EMF lines in the terminal
            "POWERTOOLS_TRACE_DISABLED": "true",
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock_endpoint,
            "WEBHOOK_NETWORK": "loopback",  # offline, webhooks may point only to this machine
        }


_FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
_ENGINE_LOCK = threading.Lock()  # moto's mock and the routed default session are process-wide

#: botocore's ``standard`` retry mode gives each client a retry quota: 500 units, 5 taken by a retry
#: after throttling and 14 by any other, given back when the retried call succeeds. A client whose
#: calls keep failing stops retrying. In AWS each concurrent invocation runs in a container of its
#: own, with clients and a quota of their own. Offline, one cached client of each kind serves every
#: concurrent invocation (800 branches in the reliability run), so persistent failures in some
#: requests would use up the quota of all of them. While an engine runs, clients are created with
#: the quota of this many containers.
CONTAINERS_PER_CLIENT = 1000


class _ContainersQuota:
    """Swaps botocore's ``RetryQuota`` for one ``containers`` times as large, for clients created
    until :meth:`restore` (botocore looks the class up when it creates a client's retry handler)."""

    def __init__(self, containers: int) -> None:
        from botocore.retries import quota

        self._module = quota
        self._original = quota.RetryQuota
        capacity = self._original.INITIAL_CAPACITY * containers

        class RetryQuota(self._original):  # type: ignore[misc, name-defined]
            def __init__(self, initial_capacity: int = capacity, lock: Any = None) -> None:
                super().__init__(initial_capacity, lock)

        quota.RetryQuota = RetryQuota

    def restore(self) -> None:
        self._module.RetryQuota = self._original


#: How often ``OfflineEngine.wait`` reads an execution's status from moto's record (no API call).
STATUS_POLL_SECONDS = 0.01
#: How often it calls the Step Functions API instead (progress, or a moto without that record).
API_POLL_SECONDS = 0.05
#: moto sets an execution's status a moment before its output or error: how long to wait for them.
_SETTLE_SECONDS = 0.5


def _moto_execution(execution_arn: str) -> Any:
    """moto 5.2.5's record of an execution (``status``, ``output``, ``error``), or None if moto is laid
    out otherwise: ``wait`` then polls through the API."""
    try:
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        _, _, _, region, account, *_ = execution_arn.split(":")
        record = stepfunctions_parser_backends[account][region].describe_execution(execution_arn)
        str(record.status)
        return record
    except Exception:  # any other layout: fall back to describe_execution
        return None


def _settled(record: Any) -> bool:
    """Whether moto's worker, which sets an ended execution's status first, has set its output or
    error too (a null output or a failure without either is possible: ``wait`` then waits
    ``_SETTLE_SECONDS`` at most)."""
    if record.status == "SUCCEEDED":
        return record.output is not None
    if record.status == "FAILED":
        return record.error is not None or record.cause is not None
    return True


#: The offline tables of admission control's slots and queue (deployed: ``stacks/admission.py``).
ADMISSION_TABLE = "imagegen-admission"
ADMISSION_WAITERS_TABLE = "imagegen-admission-waiters"


def create_admission_table(dynamodb: Any) -> None:
    """The slots and waiters tables as ``stacks/admission.py`` deploys them: partition key ``model``
    (and, for the waiters, sort key ``place``), on demand."""
    dynamodb.create_table(
        TableName=ADMISSION_TABLE,
        AttributeDefinitions=[{"AttributeName": "model", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "model", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    create_waiters_table(dynamodb, ADMISSION_WAITERS_TABLE)


def create_waiters_table(dynamodb: Any, name: str) -> None:
    """A waiters table (admission control's queue) as ``stacks/admission.py`` deploys it: partition key
    ``model``, sort key ``place``, on demand."""
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "model", "AttributeType": "S"},
            {"AttributeName": "place", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "model", "KeyType": "HASH"},
            {"AttributeName": "place", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


class OfflineEngine:
    """Runs the workflow offline. Use as a context manager; one engine per process at a time."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.bedrock: LocalBedrockServer | None = None
        self.router = LambdaRouter(FUNCTIONS)
        self.state_machines: dict[str, str] = {}
        self._saved_env: dict[str, str | None] = {}
        self._mock: Any = None
        self._sfn: Any = None
        self._events: Any = None
        self._sqs: Any = None
        self._queue_url = ""
        self._s3: Any = None
        #: The lasting links' secret (created at start): the local server signs its links with it.
        self.link_secret = b""
        self._owns_lock = False
        self._quota: _ContainersQuota | None = None
        #: moto's interpreter with :class:`~imagegen.runtime.moto_speedups.MotoFixes` while the engine
        #: runs (None when they are off); left, so every function is moto's own again, by ``stop``.
        self.moto_fixes: moto_speedups.MotoFixes | None = None
        self._moto_patches = contextlib.ExitStack()
        self._keeper_stop = threading.Event()
        self._keeper: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> OfflineEngine:
        if not _ENGINE_LOCK.acquire(blocking=False):
            raise RuntimeError("another OfflineEngine is running in this process")
        self._owns_lock = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from moto import mock_aws

        # moto's interpreter logs every failed state with its whole parse tree at ERROR level; the
        # engine reports failures itself (ExecutionResult), so keep that out of the user's terminal.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        if self.config.moto_speedups and moto_speedups.enabled_by_environment():
            self.moto_fixes = self._moto_patches.enter_context(moto_speedups.MotoFixes())
        self._quota = _ContainersQuota(CONTAINERS_PER_CLIENT)
        endpoint = self.config.bedrock_endpoint
        if endpoint is None:
            self.bedrock = LocalBedrockServer(faults=self.config.faults, quotas=self.config.bedrock_quotas)
            endpoint = self.bedrock.start()
        self._set_env({**_FAKE_AWS, **self.config.lambda_environment(endpoint)})
        boto3.setup_default_session()
        self._mock = mock_aws(
            config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
        )
        self._mock.start()
        from image_pipeline.core.clients import reset_clients  # after the environment is set

        reset_clients()
        self._create_link_secret()
        self.router.register()
        self._s3 = boto3.client("s3", region_name=REGION)
        self._sfn = boto3.client("stepfunctions", region_name=REGION)
        self._s3.create_bucket(Bucket=self.config.bucket, **bucket_location(REGION))
        if self.config.index_table:  # the image index, as stacks/index.py declares it
            dynamodb = boto3.client("dynamodb", region_name=REGION)
            dynamodb.create_table(TableName=self.config.index_table, **table_definition())
            dynamodb.update_time_to_live(
                TableName=self.config.index_table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
            )
        self._events = boto3.client("events", region_name=REGION)
        self._events.create_event_bus(Name=EVENT_BUS)
        self._capture_events()
        if self.config.admission or self.config.index_table:  # the slots', the spend ledger's writes
            self._moto_patches.enter_context(atomic_writes())
        if self.config.admission:
            create_admission_table(boto3.client("dynamodb", region_name=REGION))
        values = {k: function_arn(v) for k, v in SUBSTITUTIONS.items()}
        definition = substitute(asl_path().read_text(), {**values, "EventBusName": EVENT_BUS})
        role = f"arn:aws:iam::{ACCOUNT}:role/imagegen-offline"
        # One Standard state machine, as deployed: the API's synchronous routes start jobs too.
        created = self._sfn.create_state_machine(
            name="imagegen-jobs", definition=definition, roleArn=role, type="STANDARD"
        )
        self.state_machines["jobs"] = created["stateMachineArn"]
        self.state_machines["batch"] = create_batch_state_machine(self)
        if self.config.admission:
            self._keeper_stop.clear()
            self._keeper = threading.Thread(target=self._keep_admission, name="admission-keeper", daemon=True)
            self._keeper.start()

    def _keep_admission(self) -> None:
        """The admission keeper's schedule, offline: the Admission function's ``sweep`` every interval."""
        while not self._keeper_stop.wait(self.config.keeper_interval_seconds):
            self.router.invoke(ADMISSION.name, {"action": "sweep"})

    def stop(self) -> None:
        self._keeper_stop.set()
        if self._keeper is not None:
            self._keeper.join(timeout=30)
            self._keeper = None
        self.router.unregister()
        if self._quota is not None:
            self._quota.restore()
            self._quota = None
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        if self.bedrock is not None:
            self.bedrock.stop()
            self.bedrock = None
        self._restore_env()
        try:
            from image_pipeline.core.clients import reset_clients

            reset_clients()
        finally:
            self._moto_patches.close()
            self.moto_fixes = None
            if self._owns_lock:
                self._owns_lock = False
                _ENGINE_LOCK.release()

    def __enter__(self) -> OfflineEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _create_link_secret(self) -> None:
        """The lasting links' secret in moto's Secrets Manager, as the stack's (letters and digits),
        named to the functions that mint links (``LINKS_SECRET_ARN``): the manifest step, the webhook
        deliveries, and the local server (:attr:`link_secret`)."""
        alphabet = string.ascii_letters + string.digits
        value = "".join(secrets.choice(alphabet) for _ in range(64))
        arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="imagegen-links", SecretString=value
        )["ARN"]
        self.link_secret = value.encode()
        settings = LinkSettings(secret_arn=arn, lifetime_seconds=self.config.link_lifetime_seconds)
        self._set_env(settings.to_environment())
        link_settings.cache_clear()
        deployment_secret.cache_clear()

    def set_links_base_url(self, base_url: str | None) -> None:
        """Where the local server answers (None: nowhere now): the stored manifests and the webhooks
        carry lasting links to it (``LINKS_BASE_URL``, deployed the API's URL; restored by :meth:`stop`)."""
        variable = LinkSettings.ENVIRONMENT["base_url"]
        self._saved_env.setdefault(variable, os.environ.get(variable))
        if base_url is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = base_url.rstrip("/") + "/"
        link_settings.cache_clear()

    def set_webhook_queue(self, queue_url: str | None) -> None:
        """Let the image function queue each image's webhook on ``queue_url`` (None: no longer), as the
        deployed one does on the delivery queue (``WEBHOOK_QUEUE_URL``; restored by :meth:`stop`)."""
        from image_pipeline.core.clients import webhook_queue_url

        variable = WebhookSettings.ENVIRONMENT["queue_url"]
        self._saved_env.setdefault(variable, os.environ.get(variable))
        if queue_url is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = queue_url
        webhook_queue_url.cache_clear()

    def _set_env(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def _capture_events(self) -> None:
        """Subscribe a queue to every imagegen event on the bus, so runs can be observed offline."""
        sqs = boto3.client("sqs", region_name=REGION)
        self._queue_url = sqs.create_queue(QueueName="imagegen-offline-events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self._events.put_rule(
            Name="capture-imagegen", EventBusName=EVENT_BUS, EventPattern=json.dumps({"source": ["imagegen"]})
        )
        self._events.put_targets(
            Rule="capture-imagegen", EventBusName=EVENT_BUS, Targets=[{"Id": "queue", "Arn": queue_arn}]
        )
        self._sqs = sqs

    def published_events(self) -> list[dict[str, Any]]:
        """The imagegen events published on the bus since the last call (oldest first)."""
        events: list[dict[str, Any]] = []
        while True:
            batch = self._sqs.receive_message(QueueUrl=self._queue_url, MaxNumberOfMessages=10)
            messages = batch.get("Messages", [])
            if not messages:
                return events
            for message in messages:
                events.append(json.loads(message["Body"]))
                self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])

    def reset_admission(self) -> None:
        """Empty admission control's tables: slots, leases, tickets and the waiting counters (for tests
        that plant a holder or a queue; run between jobs, not while branches hold or wait for slots)."""
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        for table, keys in ((ADMISSION_TABLE, ("model",)), (ADMISSION_WAITERS_TABLE, ("model", "place"))):
            for item in dynamodb.scan(TableName=table, ConsistentRead=True).get("Items", []):
                dynamodb.delete_item(TableName=table, Key={key: item[key] for key in keys})

    def set_quotas(self, *, model_concurrency: dict[str, int], bedrock: dict[str, int]) -> None:
        """Change admission control's calls in flight per model (the handlers' ``MODEL_CONCURRENCY``)
        and the stand-in's quotas while the engine runs (tests; one request at a time should do it)."""
        from image_pipeline.core.admission import parse_quotas
        from image_pipeline.core.settings import get_settings

        self.config.model_concurrency = parse_quotas(model_concurrency, source="model_concurrency")
        self._set_env({"MODEL_CONCURRENCY": json.dumps(self.config.model_concurrency, sort_keys=True)})
        get_settings.cache_clear()
        if self.bedrock is not None:
            self.bedrock.set_quotas(bedrock)

    # -- clients ---------------------------------------------------------------------------------
    @property
    def s3(self) -> Any:
        """A boto3 S3 client on the engine's (moto) S3."""
        return self._s3

    @property
    def index_table(self) -> Any:
        """The image index (a boto3 ``Table`` on moto's DynamoDB), or None without one."""
        if not self.config.index_table:
            return None
        return boto3.resource("dynamodb", region_name=REGION).Table(self.config.index_table)

    @property
    def image_index(self) -> ImageIndex | None:
        """The image index as the handlers see it (retention, cache sharing), or None without one."""
        table = self.index_table
        if table is None:
            return None
        return ImageIndex(
            table, expiration_days=self.config.image_expiration_days, share_cache=self.config.share_cache
        )

    @property
    def spend_ledger(self) -> SpendLedger | None:
        """The daily spend ledger as the handlers see it (``core/spend.py``, in the index's table), or
        None without an index."""
        if not self.config.index_table:
            return None
        return SpendLedger(
            boto3.client("dynamodb", region_name=REGION),
            self.config.index_table,
            default_limit_usd=self.config.daily_spend_limit_usd,
            default_model=self.config.default_model,
        )

    @property
    def sfn(self) -> Any:
        """A boto3 Step Functions client on the engine's (moto) interpreter."""
        return self._sfn

    # -- executions ------------------------------------------------------------------------------
    def start_execution(self, request: Any, *, name: str | None = None, kind: str = "jobs") -> str:
        """Start an execution with ``request`` as its input; returns the execution ARN.

        A repeated ``name`` with the same input returns the existing execution (Standard semantics).
        """
        response = self._sfn.start_execution(
            stateMachineArn=self.state_machines[kind],
            name=name or str(uuid.uuid4()),
            input=request if isinstance(request, str) else json.dumps(request),
        )
        return response["executionArn"]

    def progress(self, execution_arn: str) -> Progress:
        """Images finished so far, from the execution's history (as ``GET /jobs/{id}`` counts them)."""
        status = self._sfn.describe_execution(executionArn=execution_arn)["status"]
        counted = execution_progress(self._sfn, execution_arn)
        return Progress(
            total=counted["total"], done=counted["done"] or 0, failed=counted["failed"] or 0, status=status
        )

    def wait(
        self,
        execution_arn: str,
        *,
        timeout: float = 600.0,
        poll: float = STATUS_POLL_SECONDS,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> ExecutionResult:
        """Block until the execution ends; ``on_progress`` is called when the count of images changes.

        Every ``poll`` seconds the status is read from moto's own record of the execution, which costs
        microseconds; a ``describe_execution`` through boto3 costs ~2 ms of CPU, and fifty requests
        polling that way every 50 ms kept a core busy (``benchmarks/``: this halves the poll lag and
        cuts the p99 of 50 concurrent requests). The result is read through the API once the execution
        has ended; progress, from its history, at most every ``API_POLL_SECONDS``.
        """
        deadline = time.monotonic() + timeout
        record = _moto_execution(execution_arn)
        seen: tuple[int | None, int, int] | None = None
        next_api_read = 0.0
        ended_at: float | None = None
        while True:
            now = time.monotonic()
            ended = False
            if record is not None and record.status in TERMINAL:
                ended_at = ended_at or now
                ended = _settled(record) or now - ended_at > _SETTLE_SECONDS
            if ended or ((record is None or on_progress is not None) and now >= next_api_read):
                next_api_read = now + max(poll, API_POLL_SECONDS)
                described = self._sfn.describe_execution(executionArn=execution_arn)
                status = described["status"]
                if on_progress is not None:
                    progress = self.progress(execution_arn)
                    key = (progress.total, progress.done, progress.failed)
                    if key != seen:
                        seen = key
                        on_progress(progress)
                if status in TERMINAL and (record is None or ended):
                    output = json.loads(described["output"]) if described.get("output") else None
                    return ExecutionResult(
                        name=described["name"],
                        arn=execution_arn,
                        status=status,
                        output=output,
                        error=described.get("error"),
                        cause=described.get("cause"),
                    )
            if now > deadline:
                status = record.status if record is not None else "RUNNING"
                raise TimeoutError(f"execution {execution_arn} still {status} after {timeout} s")
            time.sleep(poll)

    def run(
        self,
        request: Any,
        *,
        name: str | None = None,
        kind: str = "jobs",
        timeout: float = 600.0,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> ExecutionResult:
        """Start an execution and wait for it."""
        arn = self.start_execution(request, name=name, kind=kind)
        return self.wait(arn, timeout=timeout, on_progress=on_progress)

    def run_batch(self, source: BatchSource, **options: Any) -> BatchRun:
        """Upload a JSONL batch (a file, an S3 key or the lines) and run the batch workflow on it;
        returns an :class:`imagegen.runtime.batch.BatchRun`. Options: see :func:`imagegen.runtime.batch.run_batch`."""
        return run_batch(self, source, **options)

    def download(self, manifest: dict[str, Any], out_dir: Path) -> list[Path]:
        """Copy a manifest's stored images and its manifest.json from S3 to ``out_dir``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for image in manifest["images"]:
            if image.get("key"):
                target = out_dir / Path(image["key"]).name
                body = self._s3.get_object(Bucket=manifest["bucket"], Key=image["key"])["Body"].read()
                target.write_bytes(body)
                written.append(target)
        return written

    def count_executions(self) -> int:
        """Executions started so far on the engine's state machines (jobs and batch)."""
        paginator = self.sfn.get_paginator("list_executions")
        return sum(
            len(page["executions"])
            for arn in self.state_machines.values()
            for page in paginator.paginate(stateMachineArn=arn)
        )

    def list_keys(self, prefix: str = "") -> list[str]:
        """Every object key in the images bucket under ``prefix``."""
        keys: list[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.config.bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys
