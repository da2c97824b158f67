"""Batch generation offline: ``statemachine/batch_generate.asl.json`` on the engine's interpreter.

The batch state machine is created beside the per-request ones, with the same ``${...}``
substitutions the CDK construct passes (the child is the engine's Standard ``jobs`` workflow). A run
uploads the JSONL file under ``batches/`` in the engine's bucket and starts the batch with
``{"bucket", "key"}``, the input the EventBridge rule gives it on AWS (moto's EventBridge cannot
start a state machine, so the upload does not start it by itself here).

One adapter, for a moto 5.2.5 gap: its interpreter passes the ASL's parameter names of the
``states:startExecution`` integration (``StateMachineArn``, ``Name``, ``Input``) to boto3 unchanged,
which expects the API's names (``stateMachineArn``, ...), so the call fails before it is sent; and it
reads the answer by the integration's names (``ExecutionArn``) where boto3 returns the API's
(``executionArn``). Step Functions maps both itself; :func:`adapt_start_execution` does the same on
the botocore ``before-parameter-build`` / ``after-call`` events of the default session (the
documented extension point the Lambda router uses too). The rest of the integration (waiting for the
child, failing with ``States.TaskFailed``, ``StepFunctions.ExecutionAlreadyExistsException``) is moto's.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.exceptions import ClientError
from image_pipeline.contract.errors import is_not_found
from image_pipeline.core.batch import (
    BATCH_PREFIX,
    BATCH_SUFFIX,
    MANIFEST_FILE,
    RESULTS_PREFIX,
    batch_id,
    batch_name,
    parse_lines,
)
from image_pipeline.core.tenancy import batch_caller
from image_pipeline.functions import BATCH_FUNCTIONS

from imagegen.runtime.offline_account import ACCOUNT, ExecutionResult, function_arn, substitute


class BatchEngine(Protocol):
    """What the batch runner uses of :class:`imagegen.runtime.engine.OfflineEngine` (it is passed the
    engine; importing the engine's module here would make the two modules import each other)."""

    state_machines: dict[str, str]
    config: Any

    @property
    def s3(self) -> Any: ...

    @property
    def sfn(self) -> Any: ...

    def start_execution(self, request: Any, *, name: str | None = None, kind: str = "jobs") -> str: ...

    def wait(self, execution_arn: str, *, timeout: float = ...) -> ExecutionResult: ...


BATCH_ASL_FILE = "batch_generate.asl.json"
#: ASL parameter names of ``states:startExecution`` -> StartExecution API parameter names.
START_EXECUTION_PARAMETERS = {
    "StateMachineArn": "stateMachineArn",
    "Name": "name",
    "Input": "input",
    "TraceHeader": "traceHeader",
}
#: StartExecution API answer names -> the integration's result names.
START_EXECUTION_RESULT = {"executionArn": "ExecutionArn", "startDate": "StartDate"}


def batch_asl_path() -> Path:
    """The batch state machine definition of this checkout."""
    return Path(__file__).resolve().parents[2] / "statemachine" / BATCH_ASL_FILE


def _rename_start_execution_parameters(params: dict[str, Any], **_: Any) -> None:
    for asl_name, api_name in START_EXECUTION_PARAMETERS.items():
        if asl_name in params:
            params[api_name] = params.pop(asl_name)


def _add_start_execution_result_names(parsed: dict[str, Any], **_: Any) -> None:
    for api_name, result_name in START_EXECUTION_RESULT.items():
        if api_name in parsed:
            parsed.setdefault(result_name, parsed[api_name])


def adapt_start_execution(session: Any | None = None) -> None:
    """Let moto's ``states:startExecution`` integration call StartExecution (see the module doc).

    Parameters already named as the API names them (every boto3 caller) pass unchanged; answers keep
    the API's names and gain the integration's."""
    session = session or boto3._get_default_session()
    session.events.register(
        "before-parameter-build.sfn.StartExecution",
        _rename_start_execution_parameters,
        unique_id="imagegen-start-execution-parameters",
    )
    session.events.register(
        "after-call.sfn.StartExecution",
        _add_start_execution_result_names,
        unique_id="imagegen-start-execution-result",
    )


def batch_substitutions(engine: BatchEngine) -> dict[str, str]:
    """The batch ASL's placeholders, filled as the CDK construct fills them."""
    return {
        **{f.placeholder: function_arn(f.name) for f in BATCH_FUNCTIONS if f.placeholder},
        "RequestStateMachineArn": engine.state_machines["jobs"],
        "ResultsBucketName": engine.config.bucket,
    }


def create_batch_state_machine(engine: BatchEngine) -> str:
    """Create the batch (Standard) state machine on a started engine; returns its ARN."""
    adapt_start_execution()
    definition = substitute(batch_asl_path().read_text(), batch_substitutions(engine))
    created = engine.sfn.create_state_machine(
        name="imagegen-batch",
        definition=definition,
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/imagegen-offline",
        type="STANDARD",
    )
    return str(created["stateMachineArn"])


# -- runs ------------------------------------------------------------------------------------------

#: What a batch is made of: a local file, an S3 key already in the engine's bucket (``batches/...``),
#: or the lines themselves (JSON text, or objects written as one JSON line each).
BatchSource = Path | str | Sequence[str | Mapping[str, Any]]


@dataclass
class BatchProgress:
    """Child executions (requests) of a batch that have ended, of those to run."""

    finished: int
    total: int


@dataclass
class BatchRun:
    """How a batch ended: its execution, and its manifest (None if the batch was refused)."""

    result: ExecutionResult
    key: str
    manifest: dict[str, Any] | None

    def line(self, number: int) -> dict[str, Any]:
        """The manifest's record of line ``number``."""
        assert self.manifest is not None, self.result.message
        return next(i for i in self.manifest["items"] if i["line"] == number)


def _body_of(source: Sequence[str | Mapping[str, Any]]) -> bytes:
    lines = [line if isinstance(line, str) else json.dumps(line) for line in source]
    return ("\n".join(lines) + "\n").encode()


def upload_batch(engine: BatchEngine, source: BatchSource, *, key: str | None = None) -> tuple[str, bytes]:
    """Put the batch file in the engine's bucket; returns its key and bytes."""
    bucket = engine.config.bucket
    if isinstance(source, str):
        return source, engine.s3.get_object(Bucket=bucket, Key=source)["Body"].read()
    if isinstance(source, Path):
        body = source.read_bytes()
        key = key or f"{BATCH_PREFIX}{source.stem}{BATCH_SUFFIX}"
    else:
        body = _body_of(source)
        key = key or f"{BATCH_PREFIX}lines-{hashlib.sha256(body).hexdigest()[:12]}{BATCH_SUFFIX}"
    engine.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson")
    return key, body


def batch_manifest_key(key: str, body: bytes) -> str:
    """Where the batch of file ``key`` with these bytes writes its manifest."""
    return f"{RESULTS_PREFIX}{batch_id(batch_name(key), body)}/{MANIFEST_FILE}"


def read_json(engine: BatchEngine, key: str) -> dict[str, Any] | None:
    """A JSON object of the engine's bucket, or None if there is none at ``key``."""
    try:
        body = engine.s3.get_object(Bucket=engine.config.bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return dict(json.loads(body))


def progress_of(engine: BatchEngine, name: str, total: int) -> BatchProgress:
    """Finished child executions of batch ``name`` (their names start with it)."""
    finished = 0
    paginator = engine.sfn.get_paginator("list_executions")
    for page in paginator.paginate(stateMachineArn=engine.state_machines["jobs"]):
        finished += sum(
            1 for e in page["executions"] if e["name"].startswith(f"{name}-") and e["status"] != "RUNNING"
        )
    return BatchProgress(finished=finished, total=total)


def run_batch(
    engine: BatchEngine,
    source: BatchSource,
    *,
    key: str | None = None,
    max_concurrency: int | None = None,
    tolerated_failure_percentage: float | None = None,
    timeout: float = 600.0,
    on_progress: Callable[[BatchProgress], None] | None = None,
) -> BatchRun:
    """Upload a batch file and run the batch workflow on it, as its upload does on AWS."""
    key, body = upload_batch(engine, source, key=key)
    execution_input: dict[str, Any] = {"bucket": engine.config.bucket, "key": key}
    if max_concurrency is not None:
        execution_input["max_concurrency"] = max_concurrency
    if tolerated_failure_percentage is not None:
        execution_input["tolerated_failure_percentage"] = tolerated_failure_percentage
    arn = engine.start_execution(execution_input, kind="batch")
    if on_progress is not None:
        name = batch_name(key)
        try:
            items = parse_lines(body.decode(), name=name, max_lines=10**6, caller=batch_caller(key))
            total = sum(1 for i in items if not i["error"])
        except Exception:  # the batch workflow reports what is wrong with the file
            total = 0
        deadline = time.monotonic() + timeout
        seen = -1
        while engine.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
            progress = progress_of(engine, name, total)
            if progress.finished != seen:
                seen = progress.finished
                on_progress(progress)
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
    result = engine.wait(arn, timeout=timeout)
    return BatchRun(result=result, key=key, manifest=read_json(engine, batch_manifest_key(key, body)))


def download_batch(engine: BatchEngine, manifest: Mapping[str, Any], out_dir: Path) -> Path:
    """Copy every line's images and manifest, and the batch manifest, under ``out_dir`` (S3 layout)."""
    bucket = manifest["bucket"]
    for item in manifest["items"]:
        if not item.get("manifest_key"):
            continue
        request_manifest = read_json(engine, item["manifest_key"])
        if request_manifest is None:
            continue
        for image in request_manifest.get("images", []):
            if image.get("key"):
                target = out_dir / image["key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(engine.s3.get_object(Bucket=bucket, Key=image["key"])["Body"].read())
        target = out_dir / item["manifest_key"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(request_manifest, indent=2) + "\n")
    path = out_dir / manifest["manifest_key"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def default_batch_key(source: Path) -> str:
    """The key a batch file is uploaded to when none is given (``batches/<file name>``)."""
    return f"{BATCH_PREFIX}{source.stem}{BATCH_SUFFIX}"


def save_finished_requests(engine: BatchEngine, key: str, out_dir: Path) -> list[Path]:
    """Copy the images and manifest of every request of batch file ``key`` that has ended (its child
    execution succeeded, or failed after storing its manifest) under ``out_dir`` in the bucket's layout,
    as :func:`download_batch` does: what a batch stopped early (Ctrl-C) had finished is kept.
    Returns the manifests written."""
    from image_pipeline.core.manifest import stored_manifest_location

    name = batch_name(key)
    bucket = engine.config.bucket
    written: list[Path] = []
    paginator = engine.sfn.get_paginator("list_executions")
    for page in paginator.paginate(stateMachineArn=engine.state_machines["jobs"]):
        for execution in page["executions"]:
            if not execution["name"].startswith(f"{name}-") or execution["status"] == "RUNNING":
                continue
            described = engine.sfn.describe_execution(executionArn=execution["executionArn"])
            manifest: dict[str, Any] | None = None
            if described.get("output"):
                manifest = json.loads(described["output"])
            else:
                where = stored_manifest_location(
                    ExecutionResult(
                        name=execution["name"],
                        arn=execution["executionArn"],
                        status=described["status"],
                        error=described.get("error"),
                        cause=described.get("cause"),
                    ).message
                )
                manifest = read_json(engine, where[1]) if where else None
            if not isinstance(manifest, dict) or not manifest.get("manifest_key"):
                continue
            for image in manifest.get("images", []):
                if image.get("key"):
                    target = out_dir / image["key"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(engine.s3.get_object(Bucket=bucket, Key=image["key"])["Body"].read())
            target = out_dir / manifest["manifest_key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(manifest, indent=2) + "\n")
            written.append(target)
    return written
