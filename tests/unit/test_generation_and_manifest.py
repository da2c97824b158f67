"""One branch (generate_image) and the aggregation step (build_manifest), against moto S3."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from image_pipeline.contract.errors import (
    AllImagesFiltered,
    ImagesFailed,
    ImagesThrottled,
    ModelThrottled,
    ModelTimeout,
    ModelUnavailable,
    StorageError,
)
from image_pipeline.contract.request import MAX_IMAGES, MAX_PROMPT_CHARS
from image_pipeline.core import planning
from image_pipeline.core.generation import generate_image
from image_pipeline.core.manifest import HEAD_WORKERS, attachment, build_manifest, with_presigned_urls
from image_pipeline.core.settings import Settings
from image_pipeline.core.tenancy import Caller
from moto import mock_aws
from PIL import Image

from tests.support import ALL_MODELS_ACTIVE, empty_bucket

BUCKET = "test-bucket"
CALLER = Caller("apiKey", "k1a2b3c4d5")


def png_b64(width: int = 16, height: int = 16) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


class FakeBedrock:
    """Answers InvokeModel with a queue of payloads or errors, recording the calls."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def invoke_model(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return {"body": io.BytesIO(json.dumps(answer).encode())}


def client_error(code: str, message: str = "m") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "InvokeModel")


@pytest.fixture
def s3(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client
        empty_bucket(client, BUCKET)


def planned(model: str = "stable-image-core", count: int = 2) -> dict[str, Any]:
    request = {"prompt": "a red porsche", "count": count, "model": model, "seed": 10}
    checked = planning.check_request(request, Settings(images_bucket=BUCKET), today=ALL_MODELS_ACTIVE)
    return planning.plan(checked, "exec-1", caller=CALLER)


def item(plan: dict[str, Any], index: int) -> dict[str, Any]:
    return {
        "request_id": plan["request_id"],
        "model": plan["model"],
        "request": plan["request"],
        "image": plan["images"][index],
    }


def test_branch_stores_png_with_metadata(s3: Any) -> None:
    plan = planned()
    bedrock = FakeBedrock({"seeds": [10], "finish_reasons": [None], "images": [png_b64(32, 24)]})
    record = generate_image(item(plan, 0), bedrock=bedrock, s3=s3, bucket=BUCKET)
    assert record["status"] == "SUCCEEDED" and (record["width"], record["height"]) == (32, 24)
    assert bedrock.calls[0]["modelId"] == "stability.stable-image-core-v1:1"
    assert json.loads(bedrock.calls[0]["body"])["seed"] == 10
    head = s3.head_object(Bucket=BUCKET, Key=plan["images"][0]["key"])
    assert head["ContentType"] == "image/png"
    assert head["ContentLength"] == record["size_bytes"]
    assert head["Metadata"] == {
        "request-id": "exec-1",
        "model-id": "stability.stable-image-core-v1:1",
        "seed": "10",
        "index": "0",
    }


def test_filtered_output_writes_nothing(s3: Any) -> None:
    plan = planned()
    bedrock = FakeBedrock({"seeds": [10], "finish_reasons": ["Filter reason: output image"], "images": []})
    record = generate_image(item(plan, 0), bedrock=bedrock, s3=s3, bucket=BUCKET)
    assert record["status"] == "FILTERED" and record["reason_code"] == "CONTENT_FILTERED_OUTPUT"
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


def test_blocked_prompt_is_filtered_not_raised(s3: Any) -> None:
    plan = planned("nova-canvas")
    bedrock = FakeBedrock(
        client_error("ValidationException", "This request has been blocked by our content filters.")
    )
    record = generate_image(item(plan, 1), bedrock=bedrock, s3=s3, bucket=BUCKET)
    assert record["status"] == "FILTERED" and record["reason_code"] == "CONTENT_FILTERED_INPUT"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (client_error("ThrottlingException"), ModelThrottled),
        (ReadTimeoutError(endpoint_url="http://x"), ModelTimeout),
        (ConnectTimeoutError(endpoint_url="http://x"), ModelTimeout),
        (client_error("ServiceUnavailableException"), ModelUnavailable),
        # the connection dropped (after botocore's retries): transient, the state machine retries it
        (ConnectionClosedError(endpoint_url="http://x"), ModelUnavailable),
        (EndpointConnectionError(endpoint_url="http://x"), ModelUnavailable),
    ],
)
def test_transient_errors_are_raised_by_name(s3: Any, error: Exception, expected: type) -> None:
    with pytest.raises(expected):
        generate_image(item(planned(), 0), bedrock=FakeBedrock(error), s3=s3, bucket=BUCKET)


class StalledBody:
    """An InvokeModel answer whose body fails while it is read (after the call itself returned)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def read(self) -> bytes:
        raise self.error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ReadTimeoutError(endpoint_url="http://x"), ModelTimeout),  # the body stopped arriving
        (ResponseStreamingError(error="reset"), ModelUnavailable),  # the connection broke mid-body
        (IncompleteReadError(actual_bytes=3, expected_bytes=9), ModelUnavailable),
    ],
)
def test_an_answer_that_fails_while_read_is_a_named_transient_error(
    s3: Any, error: Exception, expected: type
) -> None:
    """botocore raises these from the body's read(), outside invoke_model: still named, never generic."""

    class Bedrock(FakeBedrock):
        def invoke_model(self, **kwargs: Any) -> dict[str, Any]:
            self.calls.append(kwargs)
            return {"body": StalledBody(error)}

    with pytest.raises(expected):
        generate_image(item(planned(), 0), bedrock=Bedrock(), s3=s3, bucket=BUCKET)


def test_missing_bucket_is_a_storage_error(s3: Any) -> None:
    bedrock = FakeBedrock({"seeds": [10], "finish_reasons": [None], "images": [png_b64()]})
    with pytest.raises(StorageError):
        generate_image(item(planned(), 0), bedrock=bedrock, s3=s3, bucket="no-such-bucket")


def run_branches(plan: dict[str, Any], s3: Any, answers: list[Any]) -> dict[str, Any]:
    results = []
    for index, answer in enumerate(answers):
        if isinstance(answer, dict) and answer.get("status") == "FAILED":
            results.append(
                {**answer, "index": index, **{k: plan["images"][index][k] for k in ("seed", "key")}}
            )
            continue
        results.append(generate_image(item(plan, index), bedrock=FakeBedrock(answer), s3=s3, bucket=BUCKET))
    return {**plan, "results": results}


OK = {"seeds": [1], "finish_reasons": [None], "images": [png_b64()]}
FILTERED = {"seeds": [1], "finish_reasons": ["Filter reason: prompt"], "images": []}


def failed(error: str, message: str = "boom") -> dict[str, Any]:
    return {
        "status": "FAILED",
        "error": error,
        "cause": json.dumps({"errorMessage": message, "errorType": error}),
    }


def test_partial_success_keeps_good_images_and_reports_each_failure(s3: Any) -> None:
    plan = planned(count=4)
    state = run_branches(plan, s3, [OK, FILTERED, failed("ModelThrottled", "Throttled 3 times"), OK])
    manifest = build_manifest(state, s3=s3, bucket=BUCKET, expires_in=600)
    assert manifest["status"] == "PARTIAL"
    assert (manifest["succeeded"], manifest["filtered"], manifest["failed"]) == (2, 1, 1)
    by_index = {i["index"]: i for i in manifest["images"]}
    assert by_index[1]["reason_code"] == "CONTENT_FILTERED_INPUT" and by_index[1]["key"] is None
    assert by_index[2]["reason_code"] == "THROTTLED" and by_index[2]["message"] == "Throttled 3 times"
    for i in (0, 3):
        assert by_index[i]["url"].startswith("https://") and "Signature" in by_index[i]["url"]
        assert by_index[i]["key"] in by_index[i]["url"]
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=plan["manifest_key"])["Body"].read())
    assert stored["status"] == "PARTIAL" and all("url" not in i for i in stored["images"])
    # The stored manifest names the caller's namespace (a hash), never the identity itself.
    assert stored["caller_namespace"] == CALLER.namespace == manifest["caller_namespace"]
    assert CALLER.id not in json.dumps(stored) and plan["manifest_key"].startswith(f"{CALLER.namespace}/")
    # Nothing lost: every reported image exists, and nothing else was written.
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {by_index[0]["key"], by_index[3]["key"], plan["manifest_key"]}


def test_each_image_has_a_url_to_show_it_and_one_that_downloads_it(s3: Any) -> None:
    plan = planned(count=2)
    built = build_manifest(run_branches(plan, s3, [OK, OK]), s3=s3, bucket=BUCKET, expires_in=600)
    assert all("url" in i and "download_url" not in i for i in built["images"])  # the workflow's output
    manifest = with_presigned_urls(built, s3=s3, expires_in=600)  # what the API returns
    for image in manifest["images"]:
        name = image["key"].rsplit("/", 1)[-1]
        shown = parse_qs(urlsplit(image["url"]).query)
        saved = parse_qs(urlsplit(image["download_url"]).query)
        assert "response-content-disposition" not in shown
        assert {k: v for k, v in saved.items() if "xpires" in k} == {
            k: v for k, v in shown.items() if "xpires" in k
        }
        assert saved["response-content-disposition"] == [f'attachment; filename="{name}"']
        # S3 (moto here) answers the signed override with the header, and the image itself.
        answer = requests.get(image["download_url"], timeout=10)
        assert answer.status_code == 200 and answer.headers["Content-Disposition"] == attachment(image["key"])
        assert answer.content == s3.get_object(Bucket=BUCKET, Key=image["key"])["Body"].read()
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=plan["manifest_key"])["Body"].read())
    assert all("download_url" not in i and "url" not in i for i in stored["images"])


def test_the_largest_manifest_fits_the_step_functions_payload_limit(s3: Any) -> None:
    """BuildManifest's output is a state's output (at most 256 KiB). Its largest case: 40 images,
    prompts and names at their limits, URLs signed by a role whose session token is 2,000
    characters (STS gives no maximum; a Lambda role's is about half that)."""
    request = {
        "prompt": "p" * MAX_PROMPT_CHARS,
        "negative_prompt": "n" * MAX_PROMPT_CHARS,
        "count": MAX_IMAGES,
        "model": "stable-image-core",  # the Stability models take the longest prompts
        "seed": 4_294_967_294 - MAX_IMAGES,
        "output_folder": "/".join(["f" * 49] * 4),
        "file_name_prefix": "x" * 64,
    }
    checked = planning.check_request(request, Settings(images_bucket=BUCKET))
    plan = planning.plan(checked, "r" * 80, caller=CALLER)  # the longest keys: a namespace too
    state = run_branches(plan, s3, [OK] * MAX_IMAGES)
    role = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="ASIAEXAMPLE",
        aws_secret_access_key="secret",
        aws_session_token="T" * 2000,
        config=Config(signature_version="s3v4"),
    )
    manifest = build_manifest(state, s3=s3, bucket=BUCKET, expires_in=3600)
    signed = with_presigned_urls(manifest, s3=role, expires_in=3600, downloads=False)
    assert all(len(i["url"]) > 2000 for i in signed["images"])  # the token is in every URL
    assert len(json.dumps(signed).encode()) < 256 * 1024
    # With the download URLs too it would not fit: they are added by the API, not in the workflow.
    assert len(json.dumps(with_presigned_urls(manifest, s3=role, expires_in=3600)).encode()) > 256 * 1024


@pytest.mark.parametrize(
    ("key", "header"),
    [
        ("images/r-1/image-00-7.png", 'attachment; filename="image-00-7.png"'),
        ("image-03-9.png", 'attachment; filename="image-03-9.png"'),
        ('a/b/\u00fc x".png', 'attachment; filename="__x_.png"'),
        ("a/b/", 'attachment; filename="image.png"'),
    ],
)
def test_the_download_name_is_the_key_file_name_in_plain_characters(key: str, header: str) -> None:
    assert attachment(key) == header


def test_image_stored_before_its_branch_failed_is_kept(s3: Any) -> None:
    plan = planned(count=1)
    generate_image(item(plan, 0), bedrock=FakeBedrock(OK), s3=s3, bucket=BUCKET)
    state = {**plan, "results": [{**failed("States.Timeout"), "index": 0}]}
    manifest = build_manifest(state, s3=s3, bucket=BUCKET, expires_in=600)
    assert manifest["images"][0]["status"] == "SUCCEEDED" and "kept" in manifest["images"][0]["message"]


def test_reported_image_missing_from_bucket_is_not_reported_as_succeeded(s3: Any) -> None:
    plan = planned(count=2)
    state = run_branches(plan, s3, [OK, OK])
    s3.delete_object(Bucket=BUCKET, Key=plan["images"][1]["key"])
    manifest = build_manifest(state, s3=s3, bucket=BUCKET, expires_in=600)
    assert (
        manifest["images"][1]["status"] == "FAILED"
        and manifest["images"][1]["reason_code"] == "STORAGE_MISSING"
    )


@pytest.mark.parametrize(
    ("answers", "error"),
    [
        ([FILTERED, FILTERED], AllImagesFiltered),
        ([failed("ModelThrottled"), failed("ModelThrottled")], ImagesThrottled),
        ([failed("ModelThrottled"), failed("ModelAccessDenied")], ImagesFailed),
        ([FILTERED, failed("Lambda.Unknown")], ImagesFailed),
    ],
)
def test_no_image_fails_with_a_named_error_after_storing_the_manifest(
    s3: Any, answers: list, error: type
) -> None:
    plan = planned(count=2)
    with pytest.raises(error, match="Manifest: s3://test-bucket/"):
        build_manifest(run_branches(plan, s3, answers), s3=s3, bucket=BUCKET, expires_in=600)
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=plan["manifest_key"])["Body"].read())
    assert stored["status"] == "FAILED" and stored["succeeded"] == 0


def test_missing_branch_result_is_reported(s3: Any) -> None:
    plan = planned(count=2)
    state = run_branches(plan, s3, [OK])  # only one result
    manifest = build_manifest(state, s3=s3, bucket=BUCKET, expires_in=600)
    assert manifest["images"][1]["reason_code"] == "MISSING_RESULT"


class _WatchedS3:
    """The S3 client, with its HeadObject calls counted as they overlap (each held briefly), and the
    key ``fail_key`` answered with an error of code ``fail_code``."""

    def __init__(self, s3: Any, fail_key: str | None = None, fail_code: str = "AccessDenied") -> None:
        self._s3, self._lock = s3, threading.Lock()
        self.fail_key, self.fail_code = fail_key, fail_code
        self.in_flight = self.max_in_flight = self.heads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def head_object(self, **kwargs: Any) -> Any:
        with self._lock:
            self.heads += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(0.02)  # a round trip, so that checks can overlap
            if kwargs["Key"] == self.fail_key:
                raise ClientError({"Error": {"Code": self.fail_code, "Message": "no"}}, "HeadObject")
            return self._s3.head_object(**kwargs)
        finally:
            with self._lock:
                self.in_flight -= 1


def test_a_large_manifest_checks_its_images_in_parallel_and_keeps_their_order(s3: Any) -> None:
    plan = planned(count=20)
    answers: list[Any] = [OK if i % 5 else FILTERED for i in range(20)]
    state = run_branches(plan, s3, answers)
    state["results"].reverse()  # the Map's results in any order: the manifest follows the plan
    watched = _WatchedS3(s3)
    manifest = build_manifest(state, s3=watched, bucket=BUCKET, expires_in=600)
    assert [image["index"] for image in manifest["images"]] == list(range(20))
    assert [image["status"] for image in manifest["images"]] == [
        "SUCCEEDED" if i % 5 else "FILTERED" for i in range(20)
    ]
    stored = [image for image in manifest["images"] if image["status"] == "SUCCEEDED"]
    assert all(image["key"] == plan["images"][image["index"]]["key"] for image in stored)
    assert watched.heads == 16  # one check per image that was not filtered
    assert 1 < watched.max_in_flight <= HEAD_WORKERS


def test_a_failed_check_among_parallel_ones_is_a_storage_error(s3: Any) -> None:
    plan = planned(count=6)
    state = run_branches(plan, s3, [OK] * 6)
    watched = _WatchedS3(s3, fail_key=plan["images"][3]["key"])
    with pytest.raises(StorageError, match=plan["images"][3]["key"]):
        build_manifest(state, s3=watched, bucket=BUCKET, expires_in=600)
    with pytest.raises(ClientError):  # no manifest was written for a request whose check failed
        s3.head_object(Bucket=BUCKET, Key=plan["manifest_key"])
