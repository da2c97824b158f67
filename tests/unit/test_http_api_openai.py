"""``POST /v1/images/generations`` through the HTTP API Lambda, with the event an authorizer-keyed
request carries (``tests/events/apigw_openai_images_generations.json``: the OpenAI-compatible API's
key source is AUTHORIZER, so the SDK's ``Authorization: Bearer`` is the API key API Gateway matched,
``requestContext.identity.apiKeyId``), and the authorizer function with its own event."""

# ruff: noqa: F811 - the tests take the imported http_api fixture as a parameter
from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from image_pipeline.core.tenancy import Caller
from image_pipeline.handlers import openai_authorizer

from imagegen.runtime.lambda_router import LambdaContext
from tests.unit.test_http_api import (  # noqa: F401 - http_api is a fixture
    BUCKET,
    CALLER,
    JOBS_ARN,
    REGION,
    api_event,
    call,
    envelope,
    executions,
    http_api,
    request_id,
)

EVENT = "apigw_openai_images_generations"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def test_generates_with_the_caller_of_the_matched_key(
    http_api: tuple[Any, Any], lambda_context: LambdaContext
) -> None:
    module, sfn = http_api
    event = api_event(EVENT)
    status, body, headers = call(module, event, lambda_context)
    assert status == 200, body
    assert set(body) == {"created", "data"} and isinstance(body["created"], int)
    assert body["data"] == [{"url": body["data"][0]["url"]}] and "X-Amz-Signature" in body["data"][0]["url"]
    assert headers["x-imagegen-job-id"] == [request_id(event)]
    # The job is the key's caller's (the same namespace as its x-api-key on the main API), named by the
    # API request id, with OpenAI's request read as ours (n -> count, 1024x1024 -> 1:1).
    arn = f"{JOBS_ARN.replace(':stateMachine:', ':execution:')}:{CALLER.namespace}-{request_id(event)}"
    started = sfn.describe_execution(executionArn=arn)["input"]
    assert json.loads(started) == json.loads(
        envelope({"prompt": "a red porsche", "count": 1, "aspect_ratio": "1:1"}, CALLER)
    )


def test_b64_json_reads_the_stored_png(http_api: tuple[Any, Any], lambda_context: LambdaContext) -> None:
    import boto3

    module, _ = http_api
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key="images/ok-1/image-00-7.png", Body=PNG, ContentType="image/png")
    body = {"prompt": "a red porsche", "response_format": "b64_json"}
    status, answer, _ = call(module, api_event(EVENT, body=body), lambda_context)
    assert status == 200, answer
    assert [base64.b64decode(d["b64_json"]) for d in answer["data"]] == [PNG]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "size": "1792x1024"}, "size"),
        ({"prompt": "x", "n": 9}, "n"),  # over this deployment's MAX_IMAGES_PER_REQUEST (8)
        ({"prompt": "x", "model": "gpt-image-1"}, "model"),
        ({"prompt": "x", "quality": "low"}, "quality"),
        ({"n": 1}, "prompt"),
    ],
)
def test_bad_input_is_openai_400_and_starts_nothing(
    http_api: tuple[Any, Any], lambda_context: LambdaContext, body: dict[str, Any], param: str
) -> None:
    module, sfn = http_api
    before = executions(sfn)
    status, answer, _ = call(module, api_event(EVENT, body=body), lambda_context)
    assert status == 400
    assert set(answer) == {"error"} and set(answer["error"]) == {"message", "type", "param", "code"}
    assert answer["error"]["param"] == param and answer["error"]["type"] == "invalid_request_error"
    assert executions(sfn) == before


def test_not_json_is_400_in_openai_shape(http_api: tuple[Any, Any], lambda_context: LambdaContext) -> None:
    module, _ = http_api
    event = api_event(EVENT, body="prompt=x", headers={"Content-Type": "text/plain"})
    status, answer, _ = call(module, event, lambda_context)
    assert status == 400 and answer["error"]["param"] == "Content-Type"


def test_a_context_naming_no_key_is_401_in_openai_shape(
    http_api: tuple[Any, Any], lambda_context: LambdaContext
) -> None:
    module, _ = http_api
    event = api_event(EVENT)
    event["requestContext"]["identity"]["apiKeyId"] = None
    status, answer, _ = call(module, event, lambda_context)
    assert status == 401 and answer["error"]["code"] == "invalid_api_key"


def test_the_authorizer_hands_the_bearer_key_to_api_gateway() -> None:
    method_arn = "arn:aws:execute-api:us-west-2:123456789012:abc123defg/openai/POST/v1/images/generations"
    event = {
        "type": "REQUEST",
        "methodArn": method_arn,
        "headers": {"authorization": "Bearer EXAMPLE-api-key-0123456789abcdef"},
    }
    answer = openai_authorizer.handler(event, None)
    assert answer["usageIdentifierKey"] == "EXAMPLE-api-key-0123456789abcdef"
    assert answer["principalId"] == "apiKey"  # never an identity: the caller is the matched key's id
    (statement,) = answer["policyDocument"]["Statement"]
    assert statement == {
        "Action": "execute-api:Invoke",
        "Effect": "Allow",
        "Resource": "arn:aws:execute-api:us-west-2:123456789012:abc123defg/openai/*/*",
    }


@pytest.mark.parametrize("authorization", [None, "", "Basic dXNlcjpwYXNz", "Bearer ", "EXAMPLE-key"])
def test_the_authorizer_refuses_a_request_without_a_bearer_key(authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    event = {"type": "REQUEST", "methodArn": "arn:aws:execute-api:r:1:a/s/POST/x", "headers": headers}
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        openai_authorizer.handler(event, None)


def test_caller_is_never_the_body_or_the_user_field(
    http_api: tuple[Any, Any], lambda_context: LambdaContext
) -> None:
    module, sfn = http_api
    event = api_event(EVENT, body={"prompt": "x", "user": "mallory"})
    status, _, _ = call(module, event, lambda_context)
    assert status == 200
    arn = f"{JOBS_ARN.replace(':stateMachine:', ':execution:')}:{CALLER.namespace}-{request_id(event)}"
    stored = json.loads(sfn.describe_execution(executionArn=arn)["input"])
    assert stored["caller"] == Caller("apiKey", "k1a2b3c4d5").to_input() and "user" not in stored["request"]
