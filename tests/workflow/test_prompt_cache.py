"""The image index and the prompt cache in the workflow, offline (the ASL in moto, moto's DynamoDB):
a determined request made again is copied from the first one's images with no model call; a request
without a seed, or with ``"cache": false``, calls the model; every image and job is indexed as it is
made, and the audit finds what an index write that failed left out."""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Any

import pytest
from image_pipeline.core.image_index import ImageIndex
from image_pipeline.core.tenancy import console_caller

from imagegen.testing.audit import audit_bucket, audit_index


def _request(**fields: Any) -> dict[str, Any]:
    # a prompt of its own per test: earlier tests' images are not this test's cache
    return {"prompt": f"a lighthouse at dusk {uuid.uuid4().hex[:8]}", "count": 4, "seed": 42, **fields}


def _run(engine: Any, request: dict[str, Any]) -> tuple[dict[str, Any], int]:
    before = engine.bedrock.invocations
    result = engine.run(request)
    assert result.status == "SUCCEEDED", result
    return result.output, engine.bedrock.invocations - before


def test_rerun_with_the_same_seed_is_served_from_the_cache(engine: Any) -> None:
    request = _request()
    first, first_calls = _run(engine, request)
    again, again_calls = _run(engine, request)
    assert first_calls == 4 and again_calls == 0
    for made, served in zip(first["images"], again["images"], strict=True):
        assert served["cached"] is True and served["cached_from"] == made["key"]
        assert served["cost_usd"] == 0 and served["seed"] == made["seed"]
        assert served["key"].startswith(again["prefix"])  # copied into the new request's folder
    assert "cached" not in first["images"][0]
    assert again["cost"]["model_usd"] == 0 and first["cost"]["model_usd"] > 0
    report = audit_bucket(engine.s3, engine.config.bucket, prefix=again["prefix"], returned=[again])
    assert report.ok, report.problems


@pytest.mark.parametrize("change", [{"seed": None}, {"cache": False}, {"aspect_ratio": "16:9"}])
def test_no_seed_opting_out_or_another_parameter_calls_the_model(engine: Any, change: dict[str, Any]) -> None:
    request = _request()
    _run(engine, request)
    changed = {k: v for k, v in {**request, **change}.items() if v is not None}
    output, calls = _run(engine, changed)
    assert calls == 4 and not any(i.get("cached") for i in output["images"])


def test_jobs_and_images_are_indexed_as_they_are_made(engine: Any) -> None:
    output, _ = _run(engine, _request(count=2))
    index = ImageIndex(engine.index_table)
    namespace = output["caller_namespace"]
    job = next(j for j in index.jobs(namespace, limit=200)[0] if j["job_id"] == output["request_id"])
    assert (
        job["status"] == "SUCCEEDED"
        and job["succeeded"] == 2
        and job["manifest_key"] == output["manifest_key"]
    )
    assert job["count"] == 2 and job["thumbnail_key"] == output["images"][0]["key"] and job["stopped_at"]
    images = index.job_images(namespace, output["request_id"])
    assert [i["key"] for i in images] == [i["key"] for i in output["images"]]
    assert all(i["expires_at"] > 0 and i["cost_usd"] == output["images"][0]["cost_usd"] for i in images)


def test_a_job_refused_by_its_first_step_is_indexed_as_failed(engine: Any) -> None:
    """No API wrote this job's item (the console's bare request): ValidateRequest refuses it and
    writes it FAILED with the reason, listed among the console caller's jobs by its start time."""
    name = f"refused-{uuid.uuid4().hex[:8]}"
    arn = engine.start_execution({"prompt": "a cat", "count": 99}, name=name)
    result = engine.wait(arn)
    assert result.status == "FAILED" and result.error == "InvalidRequest"
    described = engine.sfn.describe_execution(executionArn=arn)
    index = ImageIndex(engine.index_table)
    namespace = console_caller().namespace
    job = next(j for j in index.jobs(namespace, limit=200)[0] if j["job_id"] == name)
    assert (job["status"], job["error"], job["prompt"]) == ("FAILED", "InvalidRequest", "a cat")
    assert "count" in job["error_message"] and job["stopped_at"]
    started = described["startDate"].astimezone(UTC).isoformat(timespec="seconds")
    assert job["started_at"] == started  # the execution's own start ($$.Execution.StartTime)


def test_the_audit_reports_an_image_whose_index_write_failed(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index write that fails (injected: the image branch's puts raise) never fails the job; the
    audit finds the stored images the index lacks, and nothing the index has that S3 lacks."""
    from botocore.exceptions import ClientError

    real = ImageIndex.put_image

    def failing_put(self: ImageIndex, event: dict[str, Any], record: dict[str, Any], **kw: Any) -> bool:
        def boom() -> None:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, "PutItem")

        return self.write("image", boom)

    monkeypatch.setattr(ImageIndex, "put_image", failing_put)
    output, _ = _run(engine, _request(count=2))
    monkeypatch.setattr(ImageIndex, "put_image", real)
    audit = audit_index(engine.s3, engine.config.bucket, engine.index_table, prefix=output["prefix"])
    assert sorted(audit.unindexed) == sorted(i["key"] for i in output["images"])
    assert audit.missing_from_s3 == [] and not audit.ok

    healthy, _ = _run(engine, _request(count=2))
    assert audit_index(engine.s3, engine.config.bucket, engine.index_table, prefix=healthy["prefix"]).ok
    # and the other way: an image deleted from S3 behind the index's back
    engine.s3.delete_object(Bucket=engine.config.bucket, Key=healthy["images"][0]["key"])
    audit = audit_index(engine.s3, engine.config.bucket, engine.index_table, prefix=healthy["prefix"])
    assert audit.missing_from_s3 == [healthy["images"][0]["key"]]
