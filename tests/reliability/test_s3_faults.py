"""S3 faults (``imagegen.testing.s3_faults``): a failed write is retried by botocore or reported as
STORAGE_ERROR; an image written although its write was reported failed is kept; the manifest never
reports an image that does not exist. The scenarios run as one concurrent batch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from imagegen.runtime.engine import ExecutionResult
from imagegen.testing.audit import audit_bucket
from imagegen.testing.s3_faults import S3Fault, S3FaultInjector, s3_faults
from tests.reliability.support import audit, generate_image_retriers, manifest_of, stored_manifest

SMALL = {"model": "stable-image-core"}
#: botocore's total attempts of the handlers' S3 client (``image_pipeline.core.clients.s3``).
S3_ATTEMPTS = 5


@dataclass
class Batch:
    results: dict[str, ExecutionResult]
    folders: dict[str, str]
    faults: S3FaultInjector


def _rules(folders: dict[str, str]) -> list[S3Fault]:
    return [
        # 503 SlowDown twice on every image: botocore retries (throttling backoff, full jitter).
        S3Fault(pattern=rf"/{folders['transient']}/.*\.png$", times=2, code="SlowDown"),
        # 500 on every attempt for image 1: botocore gives up, the branch reports STORAGE_ERROR.
        S3Fault(pattern=rf"/{folders['persistent']}/.*-01-\d+\.png$", times=None, code="InternalError"),
        # Image 0 is written, but the caller is told 500: the manifest must find and keep it.
        S3Fault(
            pattern=rf"/{folders['ack-lost']}/.*-00-\d+\.png$", times=None, code="InternalError", when="after"
        ),
        # The manifest write fails more often than botocore retries: the state machine retries the step.
        S3Fault(
            pattern=rf"/{folders['manifest-retried']}/.*manifest\.json$",
            times=S3_ATTEMPTS + 1,
            code="InternalError",
        ),
        # Checking one image fails more often than botocore retries: same (the checks run in parallel,
        # so the failures are aimed at one key, whose check alone exhausts botocore's attempts).
        S3Fault(
            pattern=rf"/{folders['head-retried']}/.*-01-\d+\.png$",
            operation="HeadObject",
            times=S3_ATTEMPTS,
            code="InternalError",
        ),
        # The manifest can never be written.
        S3Fault(pattern=rf"/{folders['manifest-down']}/.*manifest\.json$", times=None, code="InternalError"),
    ]


@pytest.fixture(scope="module")
def batch(offline_engine: Any) -> Iterator[Batch]:
    engine = offline_engine
    tag = f"rel/s3-{uuid.uuid4().hex[:6]}"
    names = ["transient", "persistent", "ack-lost", "manifest-retried", "head-retried", "manifest-down"]
    folders = {name: f"{tag}/{name}" for name in names}
    with s3_faults(*_rules(folders)) as faults:
        arns = {
            name: engine.start_execution(
                {"prompt": f"s3 {name}", "count": 3, "seed": 10 * i + 1, "output_folder": folder, **SMALL},
                kind="jobs",
            )
            for i, (name, folder) in enumerate(folders.items())
        }
        results = {name: engine.wait(arn, timeout=300, poll=0.1) for name, arn in arns.items()}
    yield Batch(results, folders, faults)


def test_slowdown_is_retried_by_botocore_and_every_image_kept(batch: Batch, offline_engine: Any) -> None:
    result = batch.results["transient"]
    assert result.status == "SUCCEEDED", result.message
    assert manifest_of(result)["succeeded"] == 3
    assert batch.faults.attempts_for(rf"/{batch.folders['transient']}/.*\.png$") == 3 * 3
    assert audit(offline_engine, batch.folders["transient"], [manifest_of(result)]).ok


def test_a_write_that_keeps_failing_is_storage_error_and_the_others_kept(
    batch: Batch, offline_engine: Any
) -> None:
    result = batch.results["persistent"]
    assert result.status == "SUCCEEDED", result.message
    images = manifest_of(result)["images"]
    assert [(i["status"], i["reason_code"]) for i in images] == [
        ("SUCCEEDED", None),
        ("FAILED", "STORAGE_ERROR"),
        ("SUCCEEDED", None),
    ]
    assert images[1]["key"] is None and "url" not in images[1]
    assert batch.faults.attempts_for(rf"/{batch.folders['persistent']}/.*-01-\d+\.png$") == S3_ATTEMPTS
    # StorageError is not retried by the state machine: botocore already did.
    assert "StorageError" not in generate_image_retriers()
    report = audit(offline_engine, batch.folders["persistent"], [manifest_of(result)])
    assert report.ok and report.image_objects == 2, report


def test_an_image_stored_despite_a_failed_write_is_kept(batch: Batch, offline_engine: Any) -> None:
    result = batch.results["ack-lost"]
    assert result.status == "SUCCEEDED", result.message
    first = manifest_of(result)["images"][0]
    assert (first["status"], first["message"]) == ("SUCCEEDED", "stored before its branch failed; kept")
    report = audit(offline_engine, batch.folders["ack-lost"], [manifest_of(result)])
    assert report.ok and report.image_objects == 3, report


@pytest.mark.parametrize("scenario", ["manifest-retried", "head-retried"])
def test_the_manifest_step_is_retried_by_the_state_machine(
    batch: Batch, offline_engine: Any, scenario: str
) -> None:
    result = batch.results[scenario]
    assert result.status == "SUCCEEDED", result.message
    assert manifest_of(result)["succeeded"] == 3
    history = offline_engine.sfn.get_execution_history(executionArn=result.arn, maxResults=1000)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    # One task failed: the manifest step's first attempt. A branch waits for its model's admission slot
    # on its task token (no failed task); an AcquireSlot that DynamoDB throttled fails with NoSlot and
    # is asked again: not counted.
    failed = [e["taskFailedEventDetails"] for e in history if e["type"] == "TaskFailed"]
    assert entered.count("BuildManifest") == 1
    assert [f.get("error") for f in failed if f.get("error") != "NoSlot"] == ["StorageError"], failed
    if scenario == "head-retried":  # botocore's attempts all failed, the state machine's retry passed
        head_of_image_1 = rf"/{batch.folders[scenario]}/.*-01-\d+\.png$"
        assert batch.faults.attempts_for(head_of_image_1, "HeadObject") == S3_ATTEMPTS + 1
    assert audit(offline_engine, batch.folders[scenario], [manifest_of(result)]).ok


def test_a_manifest_that_cannot_be_written_fails_the_request_and_the_audit_finds_the_images(
    batch: Batch, offline_engine: Any
) -> None:
    """Known gap: the images are stored, no manifest reports them (the run fails with StorageError,
    so the API answers 502 and the failure event names the error). The audit's job is to notice."""
    result = batch.results["manifest-down"]
    assert (result.status, result.error) == ("FAILED", "StorageError")
    report = audit(offline_engine, batch.folders["manifest-down"])
    assert not report.ok
    assert (report.manifests, report.unreported_objects) == (0, 3)
    assert all("no manifest beside it" in p for p in report.problems)


def test_the_manifest_never_reports_an_image_that_does_not_exist(batch: Batch, offline_engine: Any) -> None:
    for name, result in batch.results.items():
        if name == "manifest-down":
            continue
        manifest = result.output if result.output is not None else stored_manifest(offline_engine, result)
        for image in manifest["images"]:
            if image["status"] == "SUCCEEDED":
                head = offline_engine.s3.head_object(Bucket=manifest["bucket"], Key=image["key"])
                assert head["ContentLength"] == image["size_bytes"], (name, image)


def test_faults_end_with_the_block(offline_engine: Any, engine: Any, folder: str) -> None:
    """After the block, the handlers' recreated clients write normally, even to a faulted folder."""
    with s3_faults(S3Fault(pattern=rf"/{folder}/", times=None, code="InternalError")) as faults:
        pass
    result = engine.run({"prompt": "after the faults", "count": 1, "output_folder": folder, **SMALL})
    assert result.status == "SUCCEEDED", result.message
    assert faults.injected == 0 and not faults.active
    assert audit_bucket(engine.s3, engine.config.bucket, prefix=f"{folder}/").ok


def test_retries_are_not_rationed_across_concurrent_invocations(offline_engine: Any) -> None:
    """botocore's retry quota (500 units; 14 per retry after a 500) is per client. In AWS each
    concurrent invocation has a container and clients of its own; offline one client serves them
    all, so the engine creates clients with the quota of many containers. 40 writes that always
    fail, one retry each: a client with botocore's own quota makes 35 of the 40 retries."""
    from botocore.config import Config
    from botocore.exceptions import ClientError
    from botocore.retries import quota

    from imagegen.runtime.engine import CONTAINERS_PER_CLIENT

    tag = f"rel/quota-{uuid.uuid4().hex[:6]}"
    config = Config(retries={"mode": "standard", "total_max_attempts": 2})
    keys = 40
    engines_quota = quota.RetryQuota
    botocores_quota = engines_quota.__mro__[1]  # the engine's class extends botocore's
    assert engines_quota().available_capacity == botocores_quota.INITIAL_CAPACITY * CONTAINERS_PER_CLIENT

    def fail_all(client: Any, name: str) -> None:
        def put(i: int) -> None:
            with pytest.raises(ClientError):
                client.put_object(
                    Bucket=offline_engine.config.bucket, Key=f"{tag}/{name}/k{i}.png", Body=b"x"
                )

        with ThreadPoolExecutor(max_workers=keys) as pool:
            list(pool.map(put, range(keys)))

    with s3_faults(S3Fault(pattern=rf"/{tag}/", times=None, code="InternalError")) as faults:
        fail_all(boto3.client("s3", region_name="us-east-1", config=config), "engine")
        quota.RetryQuota = botocores_quota
        try:
            own = boto3.client("s3", region_name="us-east-1", config=config)
        finally:
            quota.RetryQuota = engines_quota
        fail_all(own, "botocore")
    assert faults.attempts_for(rf"/{tag}/engine/") == 2 * keys
    assert faults.attempts_for(rf"/{tag}/botocore/") == keys + botocores_quota.INITIAL_CAPACITY // 14
