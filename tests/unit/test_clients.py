"""The Lambda package's AWS clients (``image_pipeline.core.clients``): presigned URLs for the bucket's
Regional endpoint, and the timeouts and attempts the time budget (``core/time_budget.py``) counts on.
No network: fake credentials, moto, and the local Bedrock stand-in."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from image_pipeline.contract.errors import ModelTimeout
from image_pipeline.core import clients, time_budget
from image_pipeline.core.generation import invoke_model
from image_pipeline.core.settings import Settings
from image_pipeline.models.registry import get_adapter
from moto import mock_aws

from imagegen.standin.bedrock_server import FaultPlan, LocalBedrockServer
from tests.support import empty_bucket

BUCKET = "imagegen-images-123"
KEY = "images/exec-1/image-00-7.png"


@pytest.fixture
def region(
    request: pytest.FixtureRequest, aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The fake credentials, in the Region the test is parametrized with; fresh clients."""
    name = getattr(request, "param", "us-west-2")
    monkeypatch.setenv("AWS_DEFAULT_REGION", name)
    monkeypatch.setenv("AWS_REGION", name)
    for variable in clients.S3_ENDPOINT_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    clients.reset_clients()
    yield name
    clients.reset_clients()


@pytest.mark.parametrize("region", ["us-east-1", "us-west-2", "eu-west-1"], indirect=True)
def test_presigned_urls_name_the_buckets_regional_endpoint(region: str) -> None:
    """Not the global ``<bucket>.s3.amazonaws.com``, which a bucket younger than a day may answer with a
    307 whose redirected request fails its signature (us-east-1 too: botocore's own default there is
    the global host)."""
    url = clients.s3().generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": KEY}, ExpiresIn=900
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        f"{BUCKET}.s3.{region}.amazonaws.com",
        f"/{KEY}",
    )
    query = parse_qs(parts.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]  # SigV4, never SigV2's AWSAccessKeyId/Signature
    assert query["X-Amz-Credential"][0].endswith(f"/{region}/s3/aws4_request")
    assert query["X-Amz-Expires"] == ["900"]


def test_with_an_s3_endpoint_of_ones_own_urls_stay_on_it(
    region: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local S3 (``AWS_ENDPOINT_URL_S3``): path-style URLs on that endpoint, not ``<bucket>.localhost``."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://localhost:4566")
    clients.reset_clients()
    url = clients.s3().generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": KEY})
    assert url.startswith(f"http://localhost:4566/{BUCKET}/{KEY}?")
    assert clients.s3_config({}).s3 == {
        "addressing_style": "virtual",
        "us_east_1_regional_endpoint": "regional",
    }
    assert clients.s3_config({"AWS_ENDPOINT_URL": "http://x"}).s3 == {
        "us_east_1_regional_endpoint": "regional"
    }


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"], indirect=True)
def test_offline_a_regional_presigned_url_still_fetches_the_image(region: str) -> None:
    """moto answers the Regional host as it answered the global one: offline links keep resolving (the
    local server rewrites them to its /files route as well: tests/e2e/test_local_api.py)."""
    with mock_aws():
        s3 = clients.s3()
        location = (
            {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        )
        s3.create_bucket(Bucket=BUCKET, **location)
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"\x89PNG image", ContentType="image/png")
        try:
            url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": KEY})
            assert urlsplit(url).netloc == f"{BUCKET}.s3.{region}.amazonaws.com"
            answer = requests.get(url, timeout=10)
            assert (answer.status_code, answer.content) == (200, b"\x89PNG image")
        finally:
            empty_bucket(boto3.client("s3", region_name=region), BUCKET)


def config_of(client: Any) -> tuple[float, float, dict[str, Any]]:
    config = client.meta.config
    return config.connect_timeout, config.read_timeout, config.retries


def test_every_client_is_built_with_the_numbers_the_time_budget_counts(
    region: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEDROCK_MAX_ATTEMPTS", "4")
    monkeypatch.setenv("BEDROCK_READ_TIMEOUT_SECONDS", "45")
    clients.reset_clients()
    bedrock = time_budget.bedrock(Settings(bedrock_max_attempts=4, bedrock_read_timeout_seconds=45))
    expected = {
        clients.bedrock_runtime(): bedrock,
        clients.s3(): time_budget.S3,
        clients.stepfunctions(): time_budget.STEPFUNCTIONS,
    }
    for client, timeouts in expected.items():
        assert config_of(client) == (
            timeouts.connect,
            timeouts.read,
            {"mode": "standard", "total_max_attempts": timeouts.attempts},
        ), client.meta.service_model.service_name


def test_the_default_read_timeout_is_botocores_and_fits_the_budget() -> None:
    settings = Settings()
    assert settings.bedrock_read_timeout_seconds == 60
    assert time_budget.bedrock(settings).worst_case_seconds == 3 * (5 + 60) + (1 + 5) + (2 + 5)


# -- a hung model call ------------------------------------------------------------------------------


@pytest.fixture
def slow_bedrock(region: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalBedrockServer]:
    """The Bedrock stand-in answering after 2 s; the handlers' client waits 1 s, twice."""
    with LocalBedrockServer(check_availability=False, faults=FaultPlan(latency_seconds=2.0)) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.endpoint_url)
        monkeypatch.setenv("BEDROCK_READ_TIMEOUT_SECONDS", "1")
        monkeypatch.setenv("BEDROCK_MAX_ATTEMPTS", "2")
        clients.reset_clients()
        yield server


def test_a_model_slower_than_the_read_timeout_is_a_model_timeout_after_the_attempts(
    slow_bedrock: LocalBedrockServer,
) -> None:
    """A real socket read timeout on each of botocore's attempts, then the named, retried error: never a
    Lambda timeout (the function's own timeout holds these attempts with room to spare)."""
    adapter = get_adapter("stable-image-core")
    started = time.monotonic()
    with pytest.raises(ModelTimeout, match="no answer from Bedrock in time"):
        invoke_model(
            clients.bedrock_runtime(),
            adapter.model_id,
            adapter.build_body({"prompt": "a slow lighthouse", "aspect_ratio": "1:1"}, 7),
        )
    elapsed = time.monotonic() - started
    assert slow_bedrock.invocations == 2  # BEDROCK_MAX_ATTEMPTS
    bound = time_budget.ClientTimeouts(connect=time_budget.BEDROCK_CONNECT_SECONDS, read=1, attempts=2)
    assert 2 <= elapsed < bound.worst_case_seconds
