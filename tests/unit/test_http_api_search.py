"""The deployed ``GET /images/search`` (the HTTP API function) with API Gateway proxy events over moto's
S3 and DynamoDB: the caller's own images with fresh presigned URLs, another caller's never, bad
parameters 400 naming the field."""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from image_pipeline.core import clients, planning
from image_pipeline.core.generation import generate_image
from image_pipeline.core.image_index import ImageIndex
from image_pipeline.core.index_keys import table_definition
from image_pipeline.core.settings import Settings
from image_pipeline.core.tenancy import Caller
from moto import mock_aws

from imagegen.runtime.lambda_router import LambdaContext
from tests.support import ALL_MODELS_ACTIVE, load_event, with_identity
from tests.unit.test_generation_and_manifest import FakeBedrock, png_b64

REGION = "us-west-2"
BUCKET = "search-bucket"
TABLE = "search-index"
ALICE = Caller("apiKey", "k1a2b3c4d5")  # the apiKeyId of the canonical events
BOB = Caller("apiKey", "bob-key-id")


def search_event(params: dict[str, str] | None, *, api_key_id: str = ALICE.id) -> dict[str, Any]:
    event = copy.deepcopy(load_event("apigw_get_job"))
    event.update(resource="/images/search", path="/images/search", pathParameters=None)
    event["queryStringParameters"] = params
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in (params or {}).items()} or None
    event["requestContext"].update(resourcePath="/images/search", path="/prod/images/search")
    return with_identity(event, api_key_id=api_key_id)


@pytest.fixture
def api(aws_credentials: None, monkeypatch: pytest.MonkeyPatch, fresh_clients: None) -> Iterator[Any]:
    monkeypatch.setenv("IMAGES_BUCKET", BUCKET)
    monkeypatch.setenv("INDEX_TABLE", TABLE)
    monkeypatch.setenv("JOBS_STATE_MACHINE_ARN", f"arn:aws:states:{REGION}:123456789012:stateMachine:jobs")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    with mock_aws():
        clients.reset_clients()
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        boto3.client("dynamodb", region_name=REGION).create_table(TableName=TABLE, **table_definition())
        index = ImageIndex(boto3.resource("dynamodb", region_name=REGION).Table(TABLE))
        for caller, prompt in ((ALICE, "a red lighthouse"), (BOB, "a red lighthouse too")):
            checked = planning.check_request(
                {"prompt": prompt, "count": 2, "seed": 3},
                Settings(images_bucket=BUCKET),
                today=ALL_MODELS_ACTIVE,
            )
            plan = planning.plan(checked, f"job-{caller.id}", caller=caller)
            for i in range(2):
                item = {**{k: plan[k] for k in ("request_id", "model", "request", "caller_namespace", "cache")},
                        "image": plan["images"][i]}  # fmt: skip
                answer = {"seeds": [3 + i], "finish_reasons": [None], "images": [png_b64()]}
                generate_image(item, bedrock=FakeBedrock(answer), s3=s3, bucket=BUCKET, catalog=index)
        module = importlib.import_module("image_pipeline.handlers.http_api")
        module.environment.cache_clear()

        def call(event: dict[str, Any]) -> tuple[int, Any]:
            response = module.handler(event, LambdaContext(function_name="imagegen-http-api"))
            return response["statusCode"], json.loads(response["body"])

        yield call
    clients.reset_clients()


def test_the_caller_finds_its_own_images_with_fresh_urls(api: Any) -> None:
    status, body = api(search_event({"q": "lighthouse"}))
    assert status == 200, body
    assert body["count"] == 2 and body["next_token"] is None
    assert all(i["key"].startswith(ALICE.namespace + "/") for i in body["images"])
    assert all("X-Amz-Signature=" in i["url"] and BUCKET in i["url"] for i in body["images"])
    status, theirs = api(search_event({"q": "lighthouse"}, api_key_id=BOB.id))
    assert status == 200 and {i["key"] for i in theirs["images"]}.isdisjoint(
        {i["key"] for i in body["images"]}
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (None, "q"),
        ({"model": "dall-e-3"}, "model"),
        ({"since": "2026-11-30", "until": "2026-11-29"}, "until"),
        ({"q": "x", "limit": "101"}, "limit"),
    ],
)
def test_bad_searches_are_400_naming_the_field(api: Any, params: dict[str, str] | None, field: str) -> None:
    status, body = api(search_event(params))
    assert status == 400 and body["error"] == "InvalidRequest"
    assert field in [d["field"] for d in body.get("details", [])] or field in body["message"]
