"""The nothing-lost audit (``imagegen.testing.audit``) finds each kind of loss and invention.

A bucket of its own in the session's moto S3, so fabricated damage never meets other tests' objects.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from imagegen.runtime.offline_account import REGION, bucket_location
from imagegen.testing.audit import audit_bucket, audit_manifest

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40


@pytest.fixture
def bucket(offline_engine: Any) -> Iterator[str]:
    name = f"audit-{uuid.uuid4().hex[:10]}"
    offline_engine.s3.create_bucket(Bucket=name, **bucket_location(REGION))
    yield name


def _put(s3: Any, bucket: str, key: str, body: bytes = PNG, content_type: str = "image/png") -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


def _manifest(bucket: str, prefix: str, images: list[dict[str, Any]]) -> dict[str, Any]:
    succeeded = sum(i["status"] == "SUCCEEDED" for i in images)
    return {
        "bucket": bucket,
        "prefix": prefix,
        "manifest_key": f"{prefix}manifest.json",
        "status": "SUCCEEDED" if succeeded == len(images) else "PARTIAL" if succeeded else "FAILED",
        "requested": len(images),
        "succeeded": succeeded,
        "filtered": sum(i["status"] == "FILTERED" for i in images),
        "failed": sum(i["status"] == "FAILED" for i in images),
        "images": images,
    }


def _good(s3: Any, bucket: str, prefix: str = "f/req-1/") -> dict[str, Any]:
    _put(s3, bucket, f"{prefix}img-00-1.png")
    images = [
        {
            "index": 0,
            "seed": 1,
            "status": "SUCCEEDED",
            "key": f"{prefix}img-00-1.png",
            "size_bytes": len(PNG),
        },
        {"index": 1, "seed": 2, "status": "FILTERED", "key": None, "reason_code": "CONTENT_FILTERED_OUTPUT"},
    ]
    manifest = _manifest(bucket, prefix, images)
    _put(s3, bucket, manifest["manifest_key"], json.dumps(manifest).encode(), "application/json")
    return manifest


def test_a_sound_run_passes(offline_engine: Any, bucket: str) -> None:
    manifest = _good(offline_engine.s3, bucket)
    report = audit_bucket(offline_engine.s3, bucket, returned=[manifest])
    assert report.ok, report
    assert (report.manifests, report.images_reported, report.image_objects) == (1, 2, 1)
    assert report.reason_codes == {"CONTENT_FILTERED_OUTPUT": 1}
    assert report.to_dict()["ok"] is True


@pytest.mark.parametrize(
    ("damage", "finding"),
    [
        ("delete the image", "reported but not stored"),
        ("wrong content type", "content type 'image/jpeg'"),
        ("wrong size", "bytes stored, manifest says"),
        ("not a PNG", "not a PNG"),
        ("orphan beside the manifest", "its manifest does not report it"),
        ("orphan without a manifest", "no manifest beside it"),
        ("counts disagree", "succeeded is 2"),
        ("filtered image names a key", "FILTERED but names key"),
        ("failed image without a reason", "without a reason code"),
        ("key outside the prefix", "outside the manifest's prefix"),
        ("returned manifest differs", "returned and stored manifests differ"),
        ("returned manifest not stored", "returned to the caller but not stored"),
    ],
)
def test_each_kind_of_damage_is_found(offline_engine: Any, bucket: str, damage: str, finding: str) -> None:
    s3 = offline_engine.s3
    manifest = _good(s3, bucket)
    key = manifest["images"][0]["key"]
    returned = [manifest]
    stored = json.loads(json.dumps(manifest))
    if damage == "delete the image":
        s3.delete_object(Bucket=bucket, Key=key)
    elif damage == "wrong content type":
        _put(s3, bucket, key, content_type="image/jpeg")
    elif damage == "wrong size":
        _put(s3, bucket, key, PNG + b"x")
    elif damage == "not a PNG":
        _put(s3, bucket, key, b"GIF89a" + b"\x00" * (len(PNG) - 6))
    elif damage == "orphan beside the manifest":
        _put(s3, bucket, "f/req-1/img-01-2.png")
    elif damage == "orphan without a manifest":
        _put(s3, bucket, "f/req-2/img-00-1.png")
    elif damage == "counts disagree":
        stored["succeeded"] = 2
    elif damage == "filtered image names a key":
        stored["images"][1]["key"] = "f/req-1/img-01-2.png"
    elif damage == "failed image without a reason":
        stored["images"][1] = {"index": 1, "seed": 2, "status": "FAILED", "key": None}
        stored.update(filtered=0, failed=1)
    elif damage == "key outside the prefix":
        _put(s3, bucket, "elsewhere/img.png")
        stored["images"][0]["key"] = "elsewhere/img.png"
    elif damage == "returned manifest differs":
        returned = [{**manifest, "images": [{**manifest["images"][0], "seed": 99}, manifest["images"][1]]}]
    elif damage == "returned manifest not stored":
        returned = [{**manifest, "manifest_key": "f/req-9/manifest.json"}]
    if stored != manifest:
        _put(s3, bucket, stored["manifest_key"], json.dumps(stored).encode(), "application/json")
    report = audit_bucket(s3, bucket, returned=returned)
    assert not report.ok
    assert any(finding in problem for problem in report.problems), report.problems


def test_two_manifests_reporting_one_key_is_found(offline_engine: Any, bucket: str) -> None:
    s3 = offline_engine.s3
    first = _good(s3, bucket, "f/a/")
    second = _manifest(bucket, "f/b/", [dict(first["images"][0], index=0)])
    _put(s3, bucket, second["manifest_key"], json.dumps(second).encode(), "application/json")
    report = audit_bucket(s3, bucket)
    assert any("reported by 2 images" in p for p in report.problems), report.problems


def test_audit_manifest_checks_one_manifest(offline_engine: Any, bucket: str) -> None:
    manifest = _good(offline_engine.s3, bucket)
    assert audit_manifest(offline_engine.s3, manifest).ok
    offline_engine.s3.delete_object(Bucket=bucket, Key=manifest["images"][0]["key"])
    assert not audit_manifest(offline_engine.s3, manifest).ok


def test_a_cancelled_job_and_a_retry_pass_and_their_faults_are_found(
    offline_engine: Any, bucket: str
) -> None:
    s3 = offline_engine.s3
    _put(s3, bucket, "f/cancelled/img-00-1.png")
    cancelled = _manifest(
        bucket,
        "f/cancelled/",
        [
            {
                "index": 0,
                "seed": 1,
                "status": "SUCCEEDED",
                "key": "f/cancelled/img-00-1.png",
                "size_bytes": len(PNG),
            },
            {"index": 1, "seed": 2, "status": "FAILED", "key": None, "reason_code": "CANCELLED"},
        ],
    )
    cancelled["cancelled"] = True
    _put(s3, bucket, cancelled["manifest_key"], json.dumps(cancelled).encode(), "application/json")
    _put(s3, bucket, "f/retry/img-01-2.png")
    retry = _manifest(
        bucket,
        "f/retry/",
        [
            {
                "index": 1,
                "seed": 2,
                "status": "SUCCEEDED",
                "key": "f/retry/img-01-2.png",
                "size_bytes": len(PNG),
            }
        ],
    )
    retry["retry_of"] = "cancelled"
    _put(s3, bucket, retry["manifest_key"], json.dumps(retry).encode(), "application/json")
    # A cancellation marker is a record of a job, not an unreported image.
    _put(s3, bucket, "cancellations/ns-cancelled", b"{}", "application/json")
    report = audit_bucket(s3, bucket, returned=[cancelled, retry])
    assert report.ok, report
    assert report.image_objects == 2 and report.reason_codes == {"CANCELLED": 1}

    # A retry naming an image twice, or a cancelled image that names a key, is found.
    retry["images"] = retry["images"] * 2
    retry.update(requested=2, succeeded=2)
    cancelled["images"][1]["key"] = "f/cancelled/img-01-2.png"
    for manifest in (retry, cancelled):
        _put(s3, bucket, manifest["manifest_key"], json.dumps(manifest).encode(), "application/json")
    problems = audit_bucket(s3, bucket).problems
    assert any("a retry's image indexes are not distinct" in p for p in problems), problems
    assert any("FAILED but names key" in p for p in problems), problems
