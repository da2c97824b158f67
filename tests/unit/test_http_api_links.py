"""Lasting links deployed, end to end through the Lambda handlers with API Gateway events over moto:
``POST /images`` and ``GET /jobs/{id}`` answer each of the caller's stored images with ``link`` and
``download_link`` (``GET /links/{token}`` of the API the caller called), ``url``/``download_url`` as
before; following the link (the follow-link function, no API key) is a 302 to the image; an image of
another namespace in a manifest gets no link; without a link secret nothing changes."""

from __future__ import annotations

import copy
import importlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from image_pipeline.core import clients
from image_pipeline.core.lasting_links import deployment_secret, link_settings
from image_pipeline.core.tenancy import Caller
from moto import mock_aws

from imagegen.runtime.lambda_router import LambdaContext
from tests.support import load_event

REGION, ACCOUNT = "us-west-2", "123456789012"
BUCKET = "http-api-links-bucket"
JOBS_NAME = "imagegen-jobs-links-test"
JOBS_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{JOBS_NAME}"
ALICE = Caller("apiKey", "k1a2b3c4d5")  # the apiKeyId of the canonical events
OWN_KEY = f"{ALICE.namespace}/images/ok-1/image-00-7.png"
FOREIGN_KEY = "0123456789ab/images/ok-1/image-01-8.png"
MANIFEST = {
    "request_id": "ok-1",
    "status": "SUCCEEDED",
    "bucket": BUCKET,
    "prefix": f"{ALICE.namespace}/images/ok-1/",
    "manifest_key": f"{ALICE.namespace}/images/ok-1/manifest.json",
    "requested": 2,
    "succeeded": 2,
    "filtered": 0,
    "failed": 0,
    "cancelled": False,
    "images": [
        {"index": 0, "seed": 7, "key": OWN_KEY, "status": "SUCCEEDED"},
        {"index": 1, "seed": 8, "key": FOREIGN_KEY, "status": "SUCCEEDED"},
    ],
}
PNG = b"\x89PNG\r\n\x1a\n-a-stored-image"


@pytest.fixture
def deployed(aws_credentials: None, monkeypatch: pytest.MonkeyPatch, fresh_clients: None) -> Iterator[Any]:
    """``api(event)`` (the HTTP API function) and ``follow(token, download)`` (the follow-link
    function), over moto's Step Functions, S3 and Secrets Manager."""
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "IMAGES_BUCKET": BUCKET,
        "PRESIGN_EXPIRY_SECONDS": "900",
        "DEFAULT_MODEL": "stable-image-core",
        "JOBS_STATE_MACHINE_ARN": JOBS_ARN,
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "LINK_LIFETIME_SECONDS": str(7 * 86400),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SYNC_MAX_WAIT_SECONDS", raising=False)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        secrets = boto3.client("secretsmanager", region_name=REGION)
        value = secrets.get_random_password(PasswordLength=64, ExcludePunctuation=True)["RandomPassword"]
        monkeypatch.setenv("LINKS_SECRET_ARN", secrets.create_secret(Name="links", SecretString=value)["ARN"])
        link_settings.cache_clear()
        deployment_secret.cache_clear()
        clients.reset_clients()
        sfn = boto3.client("stepfunctions", region_name=REGION)
        definition = {
            "StartAt": "Done",
            "States": {"Done": {"Type": "Pass", "Result": MANIFEST, "End": True}},
        }
        sfn.create_state_machine(
            name=JOBS_NAME,
            definition=json.dumps(definition),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/test",
            type="STANDARD",
        )
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        for key in (OWN_KEY, FOREIGN_KEY):
            s3.put_object(Bucket=BUCKET, Key=key, Body=PNG, ContentType="image/png")
        http_api = importlib.import_module("image_pipeline.handlers.http_api")
        http_api.environment.cache_clear()
        follow_link = importlib.import_module("image_pipeline.handlers.follow_link")

        def api(event: dict[str, Any]) -> tuple[int, Any]:
            answer = http_api.handler(event, LambdaContext(function_name="imagegen-http-api"))
            return answer["statusCode"], json.loads(answer["body"])

        def follow(link: str) -> dict[str, Any]:
            parts = urlsplit(link)
            token = parts.path.rsplit("/", 1)[1]
            event = copy.deepcopy(load_event("apigw_get_job"))
            event.update(
                resource="/links/{token}",
                path=f"/links/{token}",
                pathParameters={"token": token},
                queryStringParameters={"download": "1"} if parts.query == "download=1" else None,
                headers={"Host": parts.netloc},
                multiValueHeaders={"Host": [parts.netloc]},
            )
            event["requestContext"]["identity"].update(apiKey=None, apiKeyId=None)
            return follow_link.handler(event, LambdaContext(function_name="imagegen-follow-link"))

        yield api, follow, s3
        http_api.environment.cache_clear()
    link_settings.cache_clear()
    deployment_secret.cache_clear()


def _event(method: str, path: str, body: Any = None) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(load_event("apigw_post_images"))
    event.update(httpMethod=method, path=path, resource=path, body=json.dumps(body) if body else None)
    event["requestContext"].update(
        path=f"/v1{path}", httpMethod=method, requestId=str(uuid.uuid4()), resourcePath=path
    )
    parts = path.strip("/").split("/")
    event["pathParameters"] = {"id": parts[1]} if parts[0] == "jobs" and len(parts) > 1 else None
    return event


def _check_links(manifest: dict[str, Any], follow: Any, s3: Any) -> None:
    own, foreign = manifest["images"]
    domain = load_event("apigw_post_images")["requestContext"]["domainName"]
    assert own["link"].startswith(f"https://{domain}/v1/links/")
    assert own["download_link"] == f"{own['link']}?download=1"
    assert own["url"] and own["download_url"]  # still there: the page and the CLI read them
    assert "link" not in foreign and "download_link" not in foreign  # not under the caller's namespace
    assert manifest["links_expire_at"]

    answer = follow(own["link"])
    assert answer["statusCode"] == 302
    location = answer["headers"]["Location"]
    assert urlsplit(location).path.endswith("/image-00-7.png")
    # moto answers the presigned URL the link redirects to (moto's mock intercepts requests' calls too)
    assert requests.get(location, timeout=5).content == PNG
    download = follow(own["download_link"])["headers"]["Location"]
    assert "response-content-disposition=attachment" in download


def test_post_images_answers_with_lasting_links_that_redirect_to_the_image(deployed: Any) -> None:
    api, follow, s3 = deployed
    status, body = api(_event("POST", "/images", {"prompt": "a red porsche", "count": 2}))
    assert status == 200, body
    _check_links(body, follow, s3)


def test_get_job_answers_with_lasting_links(deployed: Any) -> None:
    api, follow, s3 = deployed
    status, accepted = api(_event("POST", "/jobs", {"prompt": "a red porsche", "count": 2}))
    assert status == 202, accepted
    job_id = accepted["job_id"]
    for _ in range(100):  # moto runs the one Pass state at once; a few polls at most
        status, job = api(_event("GET", f"/jobs/{job_id}"))
        if job.get("manifest"):
            break
        time.sleep(0.05)
    assert status == 200 and job.get("manifest"), job
    _check_links(job["manifest"], follow, s3)


def test_without_a_link_secret_answers_carry_no_link(deployed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    api, _, _ = deployed
    monkeypatch.setenv("LINKS_SECRET_ARN", "")
    link_settings.cache_clear()
    status, body = api(_event("POST", "/images", {"prompt": "a red porsche", "count": 2}))
    assert status == 200
    assert all("link" not in image for image in body["images"]) and "links_expire_at" not in body
