"""Cancelling a job (``core/cancellation.py``): the marker, a branch that finds it (no model call), the
manifest of a cancelled job; and planning a retry (``core/planning.py``), against moto S3."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from image_pipeline.contract.errors import ImagesFailed, InvalidRequest
from image_pipeline.core import planning
from image_pipeline.core.cancellation import cancelled_names, is_cancelled, mark_cancelled
from image_pipeline.core.execution_input import RetryOf
from image_pipeline.core.generation import generate_image
from image_pipeline.core.keys import cancellation_key
from image_pipeline.core.manifest import build_manifest, stored_manifest_location
from image_pipeline.core.observability import IMAGES_FAILED, IMAGES_GENERATED, outcomes_of_manifest
from image_pipeline.core.settings import Settings
from image_pipeline.core.tenancy import Caller, execution_name
from moto import mock_aws
from PIL import Image

from tests.support import empty_bucket

BUCKET = "cancel-test-bucket"
CALLER = Caller("apiKey", "k1a2b3c4d5")
NAME = execution_name(CALLER, "job-1")


@pytest.fixture
def s3(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client
        empty_bucket(client, BUCKET)


def planned(count: int = 3, retry: RetryOf | None = None) -> dict[str, Any]:
    request = {"prompt": "a red porsche", "count": count, "model": "stable-image-core", "seed": 10}
    checked = planning.check_request(request, Settings(images_bucket=BUCKET))
    return planning.plan(checked, "job-1", caller=CALLER, retry=retry, execution_name=NAME)


def item(plan: dict[str, Any], index: int) -> dict[str, Any]:
    """The Map item of image ``index``, as the ASL's ItemSelector makes it."""
    return {
        "request_id": plan["request_id"],
        "execution_name": NAME,
        "model": plan["model"],
        "request": plan["request"],
        "image": plan["images"][index],
    }


class Bedrock:
    """Answers every InvokeModel with a small PNG, counting the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def invoke_model(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, "PNG")
        seed = json.loads(kwargs["body"])["seed"]
        payload = {
            "seeds": [seed],
            "finish_reasons": [None],
            "images": [base64.b64encode(buffer.getvalue()).decode()],
        }
        return {"body": io.BytesIO(json.dumps(payload).encode())}


def test_the_marker_is_written_once(s3: Any) -> None:
    assert not is_cancelled(s3, BUCKET, NAME)
    assert mark_cancelled(s3, BUCKET, NAME) is True
    assert mark_cancelled(s3, BUCKET, NAME) is False  # If-None-Match: the second cancel is told
    assert is_cancelled(s3, BUCKET, NAME)
    assert not is_cancelled(s3, BUCKET, f"{NAME}-other") and not is_cancelled(s3, BUCKET, None)
    # A longer name beginning with this one is another execution, not this one's marker.
    mark_cancelled(s3, BUCKET, f"{NAME}x")
    assert not is_cancelled(s3, BUCKET, execution_name(CALLER, "job"))
    assert cancelled_names(s3, BUCKET, execution_name(CALLER, "")) == {NAME, f"{NAME}x"}
    assert cancelled_names(s3, BUCKET, execution_name(Caller("apiKey", "other"), "")) == set()
    assert cancellation_key(NAME) == f"cancellations/{NAME}"


def test_a_branch_of_a_cancelled_job_calls_no_model_and_stores_nothing(s3: Any) -> None:
    plan = planned()
    bedrock = Bedrock()
    first = generate_image(item(plan, 0), bedrock=bedrock, s3=s3, bucket=BUCKET)
    mark_cancelled(s3, BUCKET, NAME)
    second = generate_image(item(plan, 1), bedrock=bedrock, s3=s3, bucket=BUCKET)
    assert first["status"] == "SUCCEEDED" and bedrock.calls == 1
    assert second["status"] == second["reason_code"] == "CANCELLED" and second["key"] is None
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert plan["images"][1]["key"] not in keys


def test_the_manifest_of_a_cancelled_job_lists_what_was_stored(s3: Any) -> None:
    plan = planned()
    bedrock = Bedrock()
    results = [generate_image(item(plan, 0), bedrock=bedrock, s3=s3, bucket=BUCKET)]
    mark_cancelled(s3, BUCKET, NAME)
    results += [generate_image(item(plan, i), bedrock=bedrock, s3=s3, bucket=BUCKET) for i in (1, 2)]
    manifest = build_manifest({**plan, "results": results}, s3=s3, bucket=BUCKET, expires_in=600)
    assert manifest["cancelled"] is True and manifest["status"] == "PARTIAL"
    assert [(i["status"], i["reason_code"]) for i in manifest["images"]] == [
        ("SUCCEEDED", None),
        ("FAILED", "CANCELLED"),
        ("FAILED", "CANCELLED"),
    ]
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=plan["manifest_key"])["Body"].read())
    assert stored["cancelled"] is True and stored["images"][0]["key"] == plan["images"][0]["key"]
    # Cancelled images are not failures in the metrics (an alarm on failed images stays quiet).
    assert outcomes_of_manifest(manifest) == {IMAGES_GENERATED: 1}


def test_a_job_cancelled_before_any_image_still_ends_with_its_manifest(s3: Any) -> None:
    plan = planned(count=2)
    mark_cancelled(s3, BUCKET, NAME)
    results = [generate_image(item(plan, i), bedrock=Bedrock(), s3=s3, bucket=BUCKET) for i in (0, 1)]
    manifest = build_manifest({**plan, "results": results}, s3=s3, bucket=BUCKET, expires_in=600)
    assert manifest["cancelled"] is True and manifest["status"] == "FAILED" and manifest["succeeded"] == 0


def test_a_cancel_after_the_last_image_still_marks_the_manifest(s3: Any) -> None:
    plan = planned(count=1)
    results = [generate_image(item(plan, 0), bedrock=Bedrock(), s3=s3, bucket=BUCKET)]
    mark_cancelled(s3, BUCKET, NAME)  # the job was told "cancelling": its manifest says cancelled
    manifest = build_manifest({**plan, "results": results}, s3=s3, bucket=BUCKET, expires_in=600)
    assert manifest["cancelled"] is True and manifest["status"] == "SUCCEEDED"


def test_an_uncancelled_job_without_images_still_fails_with_its_manifest_location(s3: Any) -> None:
    plan = planned(count=1)
    results = [{"index": 0, "status": "FAILED", "error": "ModelTimeout", "cause": "slow"}]
    with pytest.raises(ImagesFailed) as raised:
        build_manifest({**plan, "results": results}, s3=s3, bucket=BUCKET, expires_in=600)
    assert stored_manifest_location(str(raised.value)) == (BUCKET, plan["manifest_key"])
    assert stored_manifest_location("Invalid request: count") is None
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=plan["manifest_key"])["Body"].read())
    assert stored["cancelled"] is False and stored["retry_of"] is None
    assert outcomes_of_manifest(stored) == {IMAGES_FAILED: 1}


# -- planning a retry ---------------------------------------------------------------------------------


def test_a_retry_plans_only_its_images_with_their_seeds_and_file_names() -> None:
    original = planned(count=4)
    retry = RetryOf("job-0", ((3, original["images"][3]["seed"]), (1, original["images"][1]["seed"])))
    checked = planning.check_request(
        {"prompt": "a red porsche", "count": 4, "model": "stable-image-core", "seed": 10},
        Settings(images_bucket=BUCKET),
    )
    again = planning.plan(checked, "job-2", caller=CALLER, retry=retry, execution_name="x")
    assert [(i["index"], i["seed"]) for i in again["images"]] == [(1, 11), (3, 13)]
    names = [i["key"].rsplit("/", 1)[1] for i in again["images"]]
    assert names == [
        original["images"][1]["key"].rsplit("/", 1)[1],
        original["images"][3]["key"].rsplit("/", 1)[1],
    ]
    assert again["prefix"] != original["prefix"] and again["prefix"].endswith("/job-2/")
    assert again["retry_of"] == "job-0" and original["retry_of"] is None
    assert again["execution_name"] == "x"


@pytest.mark.parametrize(
    ("images", "problem"),
    [
        ((), "names no image"),
        (((1, 11), (1, 11)), "names an image twice"),
        (((4, 11),), "image indexes are 0 to 3"),
        (((0, -1),), "seeds are 0 to"),
    ],
)
def test_a_retry_that_does_not_fit_its_request_is_refused(
    images: tuple[tuple[int, int], ...], problem: str
) -> None:
    checked = planning.check_request({"prompt": "x", "count": 4}, Settings(images_bucket=BUCKET))
    with pytest.raises(InvalidRequest) as raised:
        planning.plan(checked, "job-2", caller=CALLER, retry=RetryOf("job-0", images))
    assert raised.value.errors[0].field == "retry" and problem in raised.value.errors[0].message


def test_the_manifest_of_a_retry_names_the_job_it_retried(s3: Any) -> None:
    checked = planning.check_request({"prompt": "x", "count": 3, "seed": 5}, Settings(images_bucket=BUCKET))
    plan = planning.plan(
        checked, "job-3", caller=CALLER, retry=RetryOf("job-0", ((2, 7),)), execution_name="n"
    )
    results = [
        generate_image({**item(plan, 0), "execution_name": "n"}, bedrock=Bedrock(), s3=s3, bucket=BUCKET)
    ]
    manifest = build_manifest({**plan, "results": results}, s3=s3, bucket=BUCKET, expires_in=600)
    assert manifest["retry_of"] == "job-0" and manifest["requested"] == 1
    assert [(i["index"], i["seed"], i["status"]) for i in manifest["images"]] == [(2, 7, "SUCCEEDED")]
