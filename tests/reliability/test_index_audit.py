"""The image index under faults: concurrent jobs whose index writes fail at random (injected) all
succeed, and the audit (``imagegen.testing.audit.audit_index``) reports exactly the images whose write
failed, both ways: every indexed image is in S3, every stored image not indexed is named."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError
from image_pipeline.core.image_index import ImageIndex

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
