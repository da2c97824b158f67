"""The nothing-lost audit: what the manifests say against what the bucket holds.

After any run (tests, the reliability run, a deployed bucket with read access) :func:`audit_bucket`
reads every ``manifest.json`` under a prefix and every object beside them, and reports each breach of
these rules as a problem (an empty list means the run lost nothing and invented nothing):

1. every image a manifest reports ``SUCCEEDED`` exists, under the manifest's own prefix, with content
   type ``image/png``, the size the manifest states, and a PNG signature;
2. an image that is not ``SUCCEEDED`` (``FILTERED``, ``FAILED``) names no key and has a reason code;
3. no image object exists that no manifest reports (an orphan: stored but never reported), and no two
   manifests report the same key;
4. a manifest agrees with itself: ``requested``/``succeeded``/``filtered``/``failed`` and ``status``
   match its images, ``manifest_key`` and ``prefix`` match where it is stored, its images are indexed
   ``0..n-1`` (a retry's, ``retry_of``, are some of its request's indexes, each once);
5. a manifest a caller received (an execution's output, ``GET /jobs/{id}``) is the stored one, image
   by image (status, key, seed, reason code).

:func:`audit_index` checks the image index (``image_pipeline.core.image_index``) against the bucket, both
ways: every image the index says is stored exists in S3, and every stored image is indexed. An index
write that failed (logged and counted, never failing its job) shows here as an unindexed image.

A cancelled job's manifest (``"cancelled": true``) is audited like any other: what it stored is listed,
and the images it did not start are ``FAILED`` with reason ``CANCELLED`` and no key. Cancellation
markers (``cancellations/<execution name>``) are records of jobs, not images: they are not counted.

It uses plain S3 calls (``ListObjectsV2``, ``GetObject``, ``HeadObject``), so it runs against moto
offline or against the real bucket.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from image_pipeline.core.keys import CANCELLATIONS_PREFIX

__all__ = ["AuditReport", "IndexAudit", "audit_bucket", "audit_index", "audit_manifest", "list_objects"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MANIFEST_NAME = "manifest.json"
_COMPARED = ("status", "key", "seed", "reason_code")
_MAX_PROBLEMS = 200


@dataclass
class AuditReport:
    """The audit's figures and problems."""

    bucket: str
    prefix: str = ""
    manifests: int = 0
    images_reported: int = 0
    images_by_status: Counter[str] = field(default_factory=Counter)
    reason_codes: Counter[str] = field(default_factory=Counter)
    objects: int = 0
    image_objects: int = 0
    unreported_objects: int = 0
    returned_manifests_checked: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing was lost and nothing was invented."""
        return self.problem_count == 0

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(text)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "ok": self.ok,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "manifests": self.manifests,
            "images_reported": self.images_reported,
            "images_by_status": dict(sorted(self.images_by_status.items())),
            "reason_codes": dict(sorted(self.reason_codes.items())),
            "objects": self.objects,
            "image_objects": self.image_objects,
            "unreported_objects": self.unreported_objects,
            "returned_manifests_checked": self.returned_manifests_checked,
            "problem_count": self.problem_count,
            "problems": list(self.problems),
        }

    def __str__(self) -> str:
        head = (
            f"audit of s3://{self.bucket}/{self.prefix}: {self.manifests} manifests, "
            f"{self.images_reported} images reported, {self.image_objects} image objects, "
            f"{self.problem_count} problems"
        )
        return "\n  ".join([head, *self.problems[:20]])


def list_objects(s3: Any, bucket: str, prefix: str = "") -> dict[str, int]:
    """Every object key under ``prefix`` and its size."""
    objects: dict[str, int] = {}
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            objects[item["Key"]] = int(item["Size"])
    return objects


def _folder(key: str) -> str:
    return key.rsplit("/", 1)[0] + "/" if "/" in key else ""


def _check_image(
    s3: Any, bucket: str, manifest: dict[str, Any], image: dict[str, Any], report: AuditReport
) -> None:
    where = f"{manifest.get('manifest_key')} image {image.get('index')}"
    status = image.get("status")
    key = image.get("key")
    if status != "SUCCEEDED":
        if key:
            report.problem(f"{where}: {status} but names key {key}")
        if not image.get("reason_code"):
            report.problem(f"{where}: {status} without a reason code")
        return
    if not key:
        report.problem(f"{where}: SUCCEEDED without a key")
        return
    if not str(key).startswith(str(manifest.get("prefix"))):
        report.problem(f"{where}: key {key} is outside the manifest's prefix {manifest.get('prefix')}")
    try:
        stored = s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-7")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        report.problem(f"{where}: reported but not stored ({code}): {key}")
        return
    head = stored["Body"].read()
    content_type = stored.get("ContentType")
    total = stored.get("ContentRange", "").rsplit("/", 1)[-1]
    size = int(total) if total.isdigit() else int(stored.get("ContentLength", -1))
    if content_type != "image/png":
        report.problem(f"{where}: content type {content_type!r}, not image/png: {key}")
    if head != PNG_SIGNATURE:
        report.problem(f"{where}: not a PNG (signature {head!r}): {key}")
    if size <= 0 or image.get("size_bytes") != size:
        report.problem(f"{where}: {size} bytes stored, manifest says {image.get('size_bytes')}: {key}")


def audit_manifest(s3: Any, manifest: dict[str, Any], report: AuditReport | None = None) -> AuditReport:
    """Rules 1, 2 and 4 for one manifest (its images must be in ``manifest['bucket']``)."""
    bucket = str(manifest.get("bucket", ""))
    report = report or AuditReport(bucket=bucket, prefix=str(manifest.get("prefix", "")))
    images = manifest.get("images")
    name = manifest.get("manifest_key")
    if not isinstance(images, list):
        report.problem(f"{name}: no images list")
        return report
    report.manifests += 1
    counts = Counter(str(i.get("status")) for i in images)
    succeeded = counts["SUCCEEDED"]
    expected_status = "SUCCEEDED" if succeeded == len(images) else "PARTIAL" if succeeded else "FAILED"
    if manifest.get("status") != expected_status:
        report.problem(f"{name}: status {manifest.get('status')}, its images say {expected_status}")
    for field_name, value in (
        ("requested", len(images)),
        ("succeeded", succeeded),
        ("filtered", counts["FILTERED"]),
        ("failed", counts["FAILED"]),
    ):
        if manifest.get(field_name) != value:
            report.problem(f"{name}: {field_name} is {manifest.get(field_name)}, its images say {value}")
    indexes = [i.get("index") for i in images]
    if manifest.get("retry_of"):
        if len(set(indexes)) != len(indexes) or not all(isinstance(i, int) and i >= 0 for i in indexes):
            report.problem(f"{name}: a retry's image indexes are not distinct indexes of its request")
    elif sorted(indexes) != list(range(len(images))):  # type: ignore[type-var]
        report.problem(f"{name}: image indexes are not 0..{len(images) - 1}")
    for image in images:
        report.images_reported += 1
        report.images_by_status[str(image.get("status"))] += 1
        if image.get("reason_code"):
            report.reason_codes[str(image["reason_code"])] += 1
        _check_image(s3, bucket, manifest, image, report)
    return report


def _same_images(returned: dict[str, Any], stored: dict[str, Any]) -> list[str]:
    differences = []
    by_index = {i.get("index"): i for i in stored.get("images", [])}
    if len(by_index) != len(returned.get("images", [])):
        differences.append("a different number of images")
    for image in returned.get("images", []):
        twin = by_index.get(image.get("index"), {})
        for name in _COMPARED:
            if image.get(name) != twin.get(name):
                differences.append(
                    f"image {image.get('index')} {name}: {image.get(name)!r} != {twin.get(name)!r}"
                )
    return differences


def audit_bucket(
    s3: Any,
    bucket: str,
    *,
    prefix: str = "",
    returned: Iterable[dict[str, Any]] = (),
) -> AuditReport:
    """Audit every manifest and object under ``prefix`` (all five rules; ``returned`` are manifests
    callers received, checked against the stored ones)."""
    report = AuditReport(bucket=bucket, prefix=prefix)
    objects = list_objects(s3, bucket, prefix)
    report.objects = len(objects)
    manifests: dict[str, dict[str, Any]] = {}
    for key in sorted(k for k in objects if k.rsplit("/", 1)[-1] == MANIFEST_NAME):
        try:
            manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except (ClientError, ValueError) as exc:
            report.problem(f"{key}: unreadable manifest ({exc})")
            continue
        if not isinstance(manifest, dict):
            report.problem(f"{key}: the manifest is not a JSON object")
            continue
        if manifest.get("manifest_key") != key:
            report.problem(f"{key}: says its key is {manifest.get('manifest_key')}")
        if manifest.get("prefix") != _folder(key):
            report.problem(f"{key}: says its prefix is {manifest.get('prefix')}")
        if manifest.get("bucket") != bucket:
            report.problem(f"{key}: says its bucket is {manifest.get('bucket')}")
        manifests[key] = manifest
        audit_manifest(s3, {**manifest, "bucket": bucket}, report)

    reported: Counter[str] = Counter(
        str(image["key"])
        for manifest in manifests.values()
        for image in manifest.get("images", [])
        if image.get("status") == "SUCCEEDED" and image.get("key")
    )
    for key, times in reported.items():
        if times > 1:
            report.problem(f"{key}: reported by {times} images")
    for key in objects:
        if key.rsplit("/", 1)[-1] == MANIFEST_NAME or key.startswith(CANCELLATIONS_PREFIX):
            continue
        if key.endswith(".png"):
            report.image_objects += 1
        if key not in reported:
            report.unreported_objects += 1
            has_manifest = _folder(key) + MANIFEST_NAME in manifests
            why = "its manifest does not report it" if has_manifest else "no manifest beside it"
            report.problem(f"{key}: stored but unreported ({why})")

    for manifest in returned:
        report.returned_manifests_checked += 1
        key = str(manifest.get("manifest_key"))
        stored = manifests.get(key)
        if stored is None:
            report.problem(f"{key}: returned to the caller but not stored")
            continue
        for difference in _same_images(manifest, stored):
            report.problem(f"{key}: returned and stored manifests differ: {difference}")
    return report


@dataclass
class IndexAudit:
    """The image index against the bucket: stored images it lacks, indexed images S3 lacks."""

    indexed_images: int = 0
    stored_images: int = 0
    #: Stored PNGs no index item names (an index write that failed, or no index then).
    unindexed: list[str] = field(default_factory=list)
    #: Index items of stored images whose object is not in the bucket.
    missing_from_s3: list[str] = field(default_factory=list)
    #: Stored manifests (jobs that ended with one) whose job has no item in the index.
    jobs_unindexed: list[str] = field(default_factory=list)
    #: Job items that say the job ended with a manifest that the bucket does not hold.
    manifests_missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.unindexed or self.missing_from_s3 or self.jobs_unindexed or self.manifests_missing)

    @property
    def problems(self) -> list[str]:
        return (
            [f"{k}: stored but not in the index" for k in self.unindexed]
            + [f"{k}: in the index but not in the bucket" for k in self.missing_from_s3]
            + [f"{k}: a job's manifest whose job is not in the index" for k in self.jobs_unindexed]
            + [
                f"{k}: the index says the job ended with it, the bucket lacks it"
                for k in self.manifests_missing
            ]
        )


def audit_index(s3: Any, bucket: str, table: Any, *, prefix: str = "") -> IndexAudit:
    """Compare the index's stored images (a boto3 ``Table``, read with Scan: an audit, not a query)
    with the ``*.png`` objects under ``prefix``, and its jobs with the ``manifest.json`` objects there."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = table.scan(**kwargs)
        items.extend(page.get("Items") or [])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    indexed = {
        str(i["key"])
        for i in items
        if i.get("kind") == "image"
        and i.get("status") == "SUCCEEDED"
        and str(i.get("key") or "").startswith(prefix)
    }
    objects = list_objects(s3, bucket, prefix)
    stored = {k for k in objects if k.endswith(".png")}
    # Jobs: every job item that ended with a manifest (succeeded, partly or cancelled) names one the
    # bucket holds, and every stored manifest's job has an item.
    job_manifests = {
        str(i["manifest_key"]): str(i.get("status"))
        for i in items
        if i.get("kind") == "job" and str(i.get("manifest_key") or "").startswith(prefix)
    }
    ended = {k for k, status in job_manifests.items() if status in {"SUCCEEDED", "PARTIAL", "CANCELLED"}}
    manifests = {k for k in objects if k.endswith("/manifest.json")}
    return IndexAudit(
        indexed_images=len(indexed),
        stored_images=len(stored),
        unindexed=sorted(stored - indexed),
        missing_from_s3=sorted(indexed - stored),
        jobs_unindexed=sorted(manifests - set(job_manifests)),
        manifests_missing=sorted(ended - manifests),
    )
