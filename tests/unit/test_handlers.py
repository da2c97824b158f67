"""The Lambda handlers, called as Lambda calls them, with moto S3 and a fake Bedrock client."""

from __future__ import annotations

import base64
import functools
import importlib
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from image_pipeline.contract.errors import AllImagesFiltered, InvalidRequest, ModelThrottled
from image_pipeline.core import clients
from image_pipeline.core.admission import DynamoSlotStore, Semaphore
from image_pipeline.core.execution_input import ExecutionInput
from image_pipeline.core.tenancy import Caller, console_caller, events_caller, execution_name
from moto import mock_aws
from PIL import Image

from imagegen.runtime.lambda_router import LambdaContext, LambdaRouter, function_name_of
from tests.support import empty_bucket, load_event

BUCKET = "handler-bucket"


@pytest.fixture
def env(aws_credentials: None, monkeypatch: pytest.MonkeyPatch, fresh_clients: None) -> Iterator[Any]:
    monkeypatch.setenv("IMAGES_BUCKET", BUCKET)
    monkeypatch.setenv("DEFAULT_MODEL", "stable-image-core")
    monkeypatch.setenv("MAX_IMAGES_PER_REQUEST", "8")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield s3
        empty_bucket(s3, BUCKET)


def handler(name: str) -> Any:
    """Import a handler module after the mock has started (module state stays inside it)."""
    return importlib.import_module(f"image_pipeline.handlers.{name}").handler


def test_validate_request_plans_the_branches(env: Any, lambda_context: LambdaContext) -> None:
    # A bare request is the console's: its keys are under the console's namespace.
    plan = handler("validate_request")(
        {"input": load_event("request_seed001"), "execution_name": "exec-9"}, lambda_context
    )
    assert plan["request_id"] == "exec-9" and plan["bucket"] == BUCKET and len(plan["images"]) == 4
    console = console_caller().namespace
    assert plan["prefix"] == f"{console}/000/111/exec-9/" and plan["caller_namespace"] == console


def test_validate_request_reads_the_envelope(env: Any, lambda_context: LambdaContext) -> None:
    """The API's input: the job id is the execution name without the caller's namespace, and the
    keys are under that namespace."""
    caller = Caller("apiKey", "k1a2b3c4d5")
    envelope = ExecutionInput(load_event("request_seed001"), caller).to_document()
    plan = handler("validate_request")(
        {"input": envelope, "execution_name": execution_name(caller, "order-7f3a")}, lambda_context
    )
    assert plan["request_id"] == "order-7f3a" and plan["caller_namespace"] == caller.namespace
    assert plan["prefix"] == f"{caller.namespace}/000/111/order-7f3a/"


def test_validate_request_unwraps_an_eventbridge_event(env: Any, lambda_context: LambdaContext) -> None:
    plan = handler("validate_request")(
        {"input": load_event("eventbridge_request"), "execution_name": "e"}, lambda_context
    )
    namespace = events_caller("123456789012").namespace
    assert len(plan["images"]) == 2 and plan["prefix"] == f"{namespace}/events/e/"


def test_validate_request_applies_the_deployment_limit(env: Any, lambda_context: LambdaContext) -> None:
    with pytest.raises(InvalidRequest, match="count: at most 8"):
        handler("validate_request")(
            {"input": {"prompt": "x", "count": 9}, "execution_name": "e"}, lambda_context
        )


def test_generate_and_build_manifest(
    env: Any, lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10)).save(buffer, "PNG")
    answer = {
        "seeds": [5],
        "finish_reasons": [None],
        "images": [base64.b64encode(buffer.getvalue()).decode()],
    }

    class Bedrock:
        def invoke_model(self, **_: Any) -> dict[str, Any]:
            return {"body": io.BytesIO(json.dumps(answer).encode())}

    monkeypatch.setattr(clients, "bedrock_runtime", functools.cache(Bedrock))
    plan = handler("validate_request")(
        {"input": {"prompt": "x", "count": 2}, "execution_name": "e1"}, lambda_context
    )
    results = [
        handler("generate_image")(
            {"request_id": "e1", "model": plan["model"], "request": plan["request"], "image": image},
            lambda_context,
        )
        for image in plan["images"]
    ]
    assert [r["status"] for r in results] == ["SUCCEEDED", "SUCCEEDED"]
    manifest = handler("build_manifest")({**plan, "results": results}, lambda_context)
    assert manifest["status"] == "SUCCEEDED" and manifest["succeeded"] == 2
    assert env.head_object(Bucket=BUCKET, Key=plan["manifest_key"])["ContentType"] == "application/json"


def test_build_manifest_raises_the_named_error(env: Any, lambda_context: LambdaContext) -> None:
    plan = handler("validate_request")(
        {"input": {"prompt": "x", "count": 1}, "execution_name": "e2"}, lambda_context
    )
    results = [{"index": 0, "status": "FILTERED", "reason_code": "CONTENT_FILTERED_OUTPUT", "seed": 1}]
    with pytest.raises(AllImagesFiltered):
        handler("build_manifest")({**plan, "results": results}, lambda_context)


def test_router_answers_like_lambda(env: Any) -> None:
    router = LambdaRouter({"validate": "image_pipeline.handlers.validate_request.handler"})
    status, function_error, payload = router.invoke(
        "validate", {"input": {"prompt": ""}, "execution_name": "e"}
    )
    body = json.loads(payload)
    assert (status, function_error, body["errorType"]) == (200, "Unhandled", "InvalidRequest")
    assert "prompt" in body["errorMessage"]
    status, function_error, payload = router.invoke(
        "validate", {"input": {"prompt": "hi"}, "execution_name": "e"}
    )
    assert function_error is None and json.loads(payload)["request_id"] == "e"
    assert router.invocations == {"validate": 2}


def test_router_hooks_boto3_invoke(env: Any) -> None:
    # Registers beside any router already on the default session (e.g. the session engine's):
    # each answers only for its own function names.
    router = LambdaRouter({"test-validate": "image_pipeline.handlers.validate_request.handler"})
    router.register()
    try:
        client = boto3.client("lambda", region_name="us-east-1")
        response = client.invoke(
            FunctionName="arn:aws:lambda:us-east-1:123456789012:function:test-validate",
            Payload=json.dumps({"input": {"prompt": 1}, "execution_name": "e"}),
        )
        assert response["FunctionError"] == "Unhandled"
        assert json.loads(response["Payload"].read())["errorType"] == "InvalidRequest"
    finally:
        router.unregister()


@pytest.mark.parametrize(
    ("identifier", "name"),
    [
        ("my-fn", "my-fn"),
        ("arn:aws:lambda:us-east-1:123456789012:function:my-fn", "my-fn"),
        ("arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn", "my-fn"),
        ("arn:aws:lambda:us-east-1:123456789012:function:my-fn:live", "my-fn"),
    ],
)
def test_function_name_of(identifier: str, name: str) -> None:
    assert function_name_of(identifier) == name


# -- admission control: GenerateImage gives its slot back as soon as the model has answered --------

SLOTS = "handler-slots"


def _png_answer() -> dict[str, Any]:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10)).save(buffer, "PNG")
    return {"seeds": [5], "finish_reasons": [None], "images": [base64.b64encode(buffer.getvalue()).decode()]}


@pytest.fixture
def slots(env: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("ADMISSION_TABLE", SLOTS)
    client = clients.admission_dynamodb()  # the handlers' own client (its Region)
    client.create_table(
        TableName=SLOTS,
        AttributeDefinitions=[{"AttributeName": "model", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "model", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return DynamoSlotStore(client, SLOTS)


def _branch(lambda_context: LambdaContext) -> dict[str, Any]:
    plan = handler("validate_request")(
        {"input": {"prompt": "x", "count": 1}, "execution_name": "e1"}, lambda_context
    )
    return {
        "request_id": "e1",
        "execution_name": "e1",
        "model": plan["model"],
        "request": plan["request"],
        "image": plan["images"][0],
    }


def test_generate_image_gives_its_slot_back_before_the_upload(
    slots: DynamoSlotStore, env: Any, lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, int] = {}
    branch = _branch(lambda_context)
    model = branch["model"]

    class Bedrock:
        def invoke_model(self, **_: Any) -> dict[str, Any]:
            seen["during_the_call"] = slots.read(model).in_use
            return {"body": io.BytesIO(json.dumps(_png_answer()).encode())}

    class S3:
        def __getattr__(self, name: str) -> Any:
            return getattr(env, name)

        def put_object(self, **kwargs: Any) -> Any:
            seen["at_the_upload"] = slots.read(model).in_use
            return env.put_object(**kwargs)

    monkeypatch.setattr(clients, "bedrock_runtime", functools.cache(Bedrock))
    monkeypatch.setattr(clients, "s3", functools.cache(S3))
    Semaphore(slots).acquire(model, "e1#0", 2, time.time())  # AcquireSlot
    record = handler("generate_image")(branch, lambda_context)
    assert record["status"] == "SUCCEEDED"
    assert seen == {"during_the_call": 1, "at_the_upload": 0}
    # ReleaseSlot, the safety net, finds the slot given back and counts nothing twice
    released = handler("admission")(
        {"action": "release", "model": model, "execution_name": "e1", "index": 0}, lambda_context
    )
    assert released["released"] is False
    assert slots.read(model).in_use == 0 and not slots.read(model).leases


def test_a_failed_early_release_leaves_the_slot_to_release_slot(
    slots: DynamoSlotStore, env: Any, lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    branch = _branch(lambda_context)
    model = branch["model"]

    class Bedrock:
        def invoke_model(self, **_: Any) -> dict[str, Any]:
            return {"body": io.BytesIO(json.dumps(_png_answer()).encode())}

    class Unreachable:
        def update_item(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "UpdateItem")

    monkeypatch.setattr(clients, "bedrock_runtime", functools.cache(Bedrock))
    Semaphore(slots).acquire(model, "e1#0", 2, time.time())
    monkeypatch.setattr(clients, "admission_release_dynamodb", functools.cache(Unreachable))
    record = handler("generate_image")(branch, lambda_context)
    assert record["status"] == "SUCCEEDED"  # the image the model made is kept
    assert slots.read(model).in_use == 1  # still held ...
    released = handler("admission")(
        {"action": "release", "model": model, "execution_name": "e1", "index": 0}, lambda_context
    )
    assert released["released"] is True  # ... until ReleaseSlot gives it back, once
    assert slots.read(model).in_use == 0


def test_a_throttled_call_keeps_its_slot_for_the_retry(
    slots: DynamoSlotStore, env: Any, lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    branch = _branch(lambda_context)
    model = branch["model"]

    class Bedrock:
        def invoke_model(self, **_: Any) -> dict[str, Any]:
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "InvokeModel"
            )

    monkeypatch.setattr(clients, "bedrock_runtime", functools.cache(Bedrock))
    Semaphore(slots).acquire(model, "e1#0", 2, time.time())
    with pytest.raises(ModelThrottled):
        handler("generate_image")(branch, lambda_context)
    assert slots.read(model).in_use == 1  # the state machine retries the call with the slot held
