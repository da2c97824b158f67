"""The image index under faults: concurrent jobs whose index writes fail at random (injected) all
succeed, and the audit (``imagegen.testing.audit.audit_index``) reports exactly the images whose write
failed, both ways: every indexed image is in S3, every stored image not indexed is named. A job whose
end could not be written is listed with its real status by GET /jobs, which writes it back."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError
from image_pipeline.core.image_index import ImageIndex
from image_pipeline.core.job_control import decode_token, list_jobs
from image_pipeline.core.tenancy import console_caller

from imagegen.testing.audit import audit_bucket, audit_index

REQUESTS = 8
IMAGES = 4
FAILURE_RATE = 0.3


def test_failed_index_writes_never_fail_a_job_and_the_audit_names_each(
    engine: Any, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ImageIndex.put_image
    failed: list[str] = []
    lock = threading.Lock()
    draw = random.Random(20)

    def flaky_put(self: ImageIndex, event: dict[str, Any], record: dict[str, Any], **kw: Any) -> bool:
        if f"/{folder}/" not in str(record.get("key")):  # another test's job still running in the engine
            return real(self, event, record, **kw)
        with lock:
            fail = draw.random() < FAILURE_RATE
        if not fail:
            return real(self, event, record, **kw)

        def injected() -> None:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, "PutItem"
            )

        with lock:
            failed.append(str(record.get("key")))
        return self.write("image", injected)

    monkeypatch.setattr(ImageIndex, "put_image", flaky_put)
    requests = [
        {"prompt": f"harbour {n}", "count": IMAGES, "output_folder": folder, "cache": False}
        for n in range(REQUESTS)
    ]
    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        results = list(pool.map(engine.run, requests))
    monkeypatch.setattr(ImageIndex, "put_image", real)

    assert [r.status for r in results] == ["SUCCEEDED"] * REQUESTS  # no job failed for its index
    stored = {i["key"] for r in results for i in r.output["images"]}
    assert len(stored) == REQUESTS * IMAGES and failed  # the draw failed some writes
    prefix = results[0].output["prefix"].split("/", 1)[0] + f"/{folder}/"
    report = audit_bucket(
        engine.s3, engine.config.bucket, prefix=prefix, returned=[r.output for r in results]
    )
    assert report.ok, report.problems  # S3 and the manifests lost nothing
    audit = audit_index(engine.s3, engine.config.bucket, engine.index_table, prefix=prefix)
    assert audit.missing_from_s3 == []
    assert audit.unindexed == sorted(failed)  # exactly the injected failures, reported
    assert audit.indexed_images == len(stored) - len(failed)
    assert {p.split(":")[0] for p in audit.problems} == set(failed)
    assert audit.jobs_unindexed == [] and audit.manifests_missing == []  # every job, both ways

    # A job's item lost, and another job's manifest deleted behind the index's back: both named.
    first, second = results[0].output, results[1].output
    engine.index_table.delete_item(
        Key={"pk": f"JOB#{first['caller_namespace']}#{first['request_id']}", "sk": "JOB"}
    )
    engine.s3.delete_object(Bucket=engine.config.bucket, Key=second["manifest_key"])
    audit = audit_index(engine.s3, engine.config.bucket, engine.index_table, prefix=prefix)
    assert (audit.jobs_unindexed, audit.manifests_missing) == (
        [first["manifest_key"]],
        [second["manifest_key"]],
    )


def test_a_lost_end_write_is_settled_by_the_job_list(
    engine: Any, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BuildManifest's write of a job's end fails (injected) for some of concurrent jobs: each job still
    succeeds, its item still says RUNNING, and GET /jobs (``list_jobs``, as both servers call it) lists
    every one of them as succeeded, checked against its execution, and writes the end back."""
    real = ImageIndex.finish_job
    lost: list[str] = []
    lock = threading.Lock()

    def losing_finish(self: ImageIndex, state: dict[str, Any], outcome: dict[str, Any], **kw: Any) -> bool:
        if f"/{folder}/" not in str(state.get("prefix")):  # another test's job still running in the engine
            return real(self, state, outcome, **kw)
        with lock:
            lose = len(lost) < REQUESTS // 2
            if lose:
                lost.append(str(state["request_id"]))
        if not lose:
            return real(self, state, outcome, **kw)

        def injected() -> None:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "x"}}, "UpdateItem")

        return self.write("job status", injected)

    monkeypatch.setattr(ImageIndex, "finish_job", losing_finish)
    requests = [{"prompt": f"quay {n}", "count": 1, "output_folder": folder} for n in range(REQUESTS)]
    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        results = list(pool.map(engine.run, requests))
    monkeypatch.setattr(ImageIndex, "finish_job", real)
    assert [r.status for r in results] == ["SUCCEEDED"] * REQUESTS and len(lost) == REQUESTS // 2

    caller = console_caller()  # a bare request's caller
    index = engine.image_index

    def item(job_id: str) -> dict[str, Any]:
        return engine.index_table.get_item(Key={"pk": f"JOB#{caller.namespace}#{job_id}", "sk": "JOB"})[
            "Item"
        ]

    assert {j: item(j)["status"] for j in lost} == dict.fromkeys(lost, "RUNNING")
    ours = {r.name for r in results}
    listed: dict[str, dict[str, Any]] = {}
    token = None
    while True:  # every page of the console caller's jobs (other tests' too)
        cursor = decode_token(token, None) if token else None
        page = list_jobs(
            index, caller, sfn=engine.sfn, state_machine_arn=engine.state_machines["jobs"], s3=engine.s3,
            bucket=engine.config.bucket, presign=lambda key: key, limit=100, cursor=cursor,
        )  # fmt: skip
        listed.update((j["job_id"], j) for j in page["jobs"] if j["job_id"] in ours)
        token = page["next_token"]
        if not token:
            break
    assert {j: listed[j]["status"] for j in ours} == dict.fromkeys(ours, "succeeded")
    assert all(listed[j]["thumbnail"] and listed[j]["stopped_at"] for j in lost)
    assert {j: item(j)["status"] for j in lost} == dict.fromkeys(lost, "SUCCEEDED")  # written back
