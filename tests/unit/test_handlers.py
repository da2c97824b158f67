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
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from image_pipeline.contract.errors import AllImagesFiltered, InvalidRequest, ModelThrottled
from image_pipeline.core import clients
from image_pipeline.core.admission import (
    DynamoSlotStore,
    Semaphore,
    SlotState,
    Ticket,
    quota_of,
    ticket_place,
)
from image_pipeline.core.cancellation import mark_cancelled
from image_pipeline.core.execution_input import ExecutionInput
from image_pipeline.core.tenancy import Caller, console_caller, events_caller, execution_name
from moto import mock_aws
from PIL import Image

from imagegen.runtime.engine import ADMISSION_TABLE, ADMISSION_WAITERS_TABLE, create_admission_table
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


# -- admission control: the Admission function, and GenerateImage's slot handed on after the call -----

MODEL = "stable-image-core"
START = "2026-11-30T10:00:00.000Z"


class StepFunctions:
    """Step Functions' SendTaskSuccess as the handlers' client sends it: a real boto3 client, so
    botocore checks the request against the service model; moto has no waiting task to wake, so the
    call is answered here (``dead`` tokens as a task that no longer waits: ``TaskTimedOut``)."""

    def __init__(self) -> None:
        self.client = boto3.client("stepfunctions", region_name="us-west-2")
        self.client.meta.events.register("before-call.sfn.SendTaskSuccess", self._answer)
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.dead: set[str] = set()

    def _answer(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        body = json.loads(params["body"])
        if body["taskToken"] in self.dead:
            error = {"Code": "TaskTimedOut", "Message": "Task Timed Out"}
            return AWSResponse("", 400, {}, None), {"Error": error, "ResponseMetadata": {}}
        self.sent.append((body["taskToken"], json.loads(body["output"])))
        return AWSResponse("", 200, {}, None), {"ResponseMetadata": {}}

    def woken(self) -> dict[str, str]:
        return {token: output["admission"] for token, output in self.sent}


@pytest.fixture
def sfn(env: Any, monkeypatch: pytest.MonkeyPatch) -> StepFunctions:
    sfn = StepFunctions()
    monkeypatch.setattr(clients, "admission_stepfunctions", functools.cache(lambda: sfn.client))
    return sfn


@pytest.fixture
def slots(env: Any, sfn: StepFunctions, monkeypatch: pytest.MonkeyPatch) -> DynamoSlotStore:
    """Admission control on, one call in flight for the model; the handlers' own client (its Region)."""
    monkeypatch.setenv("ADMISSION_TABLE", ADMISSION_TABLE)
    monkeypatch.setenv("ADMISSION_WAITERS_TABLE", ADMISSION_WAITERS_TABLE)
    monkeypatch.setenv("MODEL_CONCURRENCY", json.dumps({MODEL: 1}))
    monkeypatch.setenv("ALLOWED_MODELS", MODEL)
    client = clients.admission_dynamodb()
    create_admission_table(client)
    return DynamoSlotStore(client, ADMISSION_TABLE, ADMISSION_WAITERS_TABLE)


def acquire(execution: str, lambda_context: LambdaContext, index: int = 0, **extra: Any) -> Any:
    event = {
        "action": "acquire",
        "model": MODEL,
        "execution_name": execution,
        "execution_start": START,
        "index": index,
        "task_token": f"token-{execution}-{index}",
        **extra,
    }
    return handler("admission")(event, lambda_context)


def release(execution: str, lambda_context: LambdaContext, index: int = 0) -> Any:
    event = {"action": "release", "model": MODEL, "execution_name": execution, "index": index}
    return handler("admission")(event, lambda_context)


def test_acquire_with_a_free_slot_wakes_its_own_branch(
    slots: DynamoSlotStore, sfn: StepFunctions, lambda_context: LambdaContext
) -> None:
    answer = acquire("e1", lambda_context)
    assert answer == {"holder": "e1#0", "admission": "granted", "limit": 1, "waited_seconds": 0.0}
    assert sfn.sent == [("token-e1-0", answer)]  # the branch waits on its token: ended at once
    assert set(slots.read(MODEL).leases) == {"e1#0"} and slots.read(MODEL).in_use == 1


def test_acquire_without_a_slot_queues_and_a_release_wakes_it(
    slots: DynamoSlotStore, sfn: StepFunctions, lambda_context: LambdaContext
) -> None:
    acquire("e1", lambda_context)
    assert acquire("e2", lambda_context) == {"holder": "e2#0", "admission": "queued"}
    assert sfn.woken() == {"token-e1-0": "granted"}  # e2's branch waits: no SendTaskSuccess
    [queued] = slots.oldest(MODEL, 10)
    assert (queued.holder, queued.token, queued.place) == ("e2#0", "token-e2-0", f"{START}#e2#0")
    assert slots.waiting(MODEL) == 1
    assert release("e1", lambda_context) == {"holder": "e1#0", "released": True}
    assert sfn.woken() == {"token-e1-0": "granted", "token-e2-0": "granted"}
    assert slots.read(MODEL) == SlotState(1, {"e2#0": slots.read(MODEL).leases["e2#0"]})
    assert slots.oldest(MODEL, 10) == [] and slots.waiting(MODEL) == 0
    assert release("e1", lambda_context)["released"] is False  # a retried ReleaseSlot: nothing more


def test_a_granted_branch_that_no_longer_waits_passes_its_slot_on(
    slots: DynamoSlotStore, sfn: StepFunctions, lambda_context: LambdaContext
) -> None:
    sfn.dead.add("token-e1-0")  # its execution was stopped while the take ran
    assert acquire("e1", lambda_context) == {"holder": "e1#0", "admission": "abandoned"}
    assert slots.read(MODEL) == SlotState(0, {})  # given back, not leaked
    assert acquire("e2", lambda_context)["admission"] == "granted"


def test_admission_off_ends_the_wait_at_once(
    env: Any, sfn: StepFunctions, lambda_context: LambdaContext
) -> None:
    answer = acquire("e1", lambda_context)
    assert answer == {"holder": "e1#0", "admission": "off"}
    assert sfn.sent == [("token-e1-0", answer)]
    assert release("e1", lambda_context) == {"holder": "e1#0", "admission": "off"}
    assert len(sfn.sent) == 1  # a release has no token: nothing sent


def test_acquire_without_its_task_token_is_refused(
    slots: DynamoSlotStore, lambda_context: LambdaContext
) -> None:
    with pytest.raises(ValueError, match="task_token"):
        acquire("e1", lambda_context, task_token=None)
    assert slots.read(MODEL) == SlotState(0, {})


def test_the_keepers_sweep(
    slots: DynamoSlotStore, sfn: StepFunctions, env: Any, lambda_context: LambdaContext
) -> None:
    """A branch died holding the slot (its lease has expired); a cancelled job's branch and a live one
    wait: the sweep wakes the cancelled one without a slot and hands the reclaimed slot to the other."""
    now = time.time()
    slots.take(MODEL, "dead#0", 1, now - 1.0)
    slots.enqueue(MODEL, Ticket("stopped#0", "token-stopped", ticket_place(START, "stopped#0", now), now))
    slots.enqueue(MODEL, Ticket("live#0", "token-live", ticket_place(START, "live#0", now), now))
    assert mark_cancelled(env, BUCKET, "stopped")
    answer = handler("admission")({"action": "sweep"}, lambda_context)
    assert answer == {"swept": [{"model": MODEL, "in_use": 1, "waiting": 0}]}
    assert sfn.woken() == {"token-stopped": "cancelled", "token-live": "granted"}
    assert set(slots.read(MODEL).leases) == {"live#0"} and slots.oldest(MODEL, 10) == []
    assert handler("admission")({"action": "sweep"}, lambda_context)["swept"][0]["in_use"] == 1


def test_the_sweep_passes_over_an_idle_model(
    slots: DynamoSlotStore, sfn: StepFunctions, lambda_context: LambdaContext
) -> None:
    assert handler("admission")({"action": "sweep"}, lambda_context) == {"swept": []}
    assert sfn.sent == []


def test_forget_gives_an_ended_executions_slots_to_the_queue(
    slots: DynamoSlotStore, sfn: StepFunctions, lambda_context: LambdaContext
) -> None:
    """EventBridge's status change of a stopped execution: its slot goes to the waiting branch now."""
    semaphore = Semaphore(slots)
    limit = quota_of(MODEL, {})
    for i in range(limit):
        assert semaphore.try_take(MODEL, f"stopped#{i}", limit, time.time()) is not None
    slots.enqueue(MODEL, Ticket("next#0", "token-next", "2026-11-30T00:00:00.000Z#next#0", time.time()))
    answer = handler("admission")({"action": "forget", "execution_name": "stopped"}, lambda_context)
    assert answer == {"forgotten": {MODEL: limit}}
    assert [token for token, _ in sfn.sent] == ["token-next"]
    assert set(slots.read(MODEL).leases) == {"next#0"}


def _png_answer() -> dict[str, Any]:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10)).save(buffer, "PNG")
    return {"seeds": [5], "finish_reasons": [None], "images": [base64.b64encode(buffer.getvalue()).decode()]}


def _branch(lambda_context: LambdaContext) -> dict[str, Any]:
    plan = handler("validate_request")(
        {"input": {"prompt": "x", "count": 1}, "execution_name": "e1"}, lambda_context
    )
    assert plan["model"] == MODEL
    return {
        "request_id": "e1",
        "execution_name": "e1",
        "model": plan["model"],
        "request": plan["request"],
        "image": plan["images"][0],
    }


def test_generate_image_hands_its_slot_on_before_the_upload(
    slots: DynamoSlotStore,
    sfn: StepFunctions,
    env: Any,
    lambda_context: LambdaContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}
    branch = _branch(lambda_context)

    class Bedrock:
        def invoke_model(self, **_: Any) -> dict[str, Any]:
            seen["during_the_call"] = set(slots.read(MODEL).leases)
            return {"body": io.BytesIO(json.dumps(_png_answer()).encode())}

    class S3:
        def __getattr__(self, name: str) -> Any:
            return getattr(env, name)

        def put_object(self, **kwargs: Any) -> Any:
            seen["at_the_upload"] = set(slots.read(MODEL).leases)
            seen["woken_by_then"] = sfn.woken()
            return env.put_object(**kwargs)

    monkeypatch.setattr(clients, "bedrock_runtime", functools.cache(Bedrock))
    monkeypatch.setattr(clients, "s3", functools.cache(S3))
    acquire("e1", lambda_context)  # AcquireSlot
    acquire("next", lambda_context)  # another job's branch waits for the one slot
    record = handler("generate_image")(branch, lambda_context)
    assert record["status"] == "SUCCEEDED"
    assert seen == {
        "during_the_call": {"e1#0"},
        "at_the_upload": {"next#0"},
        "woken_by_then": {"token-e1-0": "granted", "token-next-0": "granted"},
    }
    # ReleaseSlot, the safety net, finds the slot handed on and counts nothing twice
    assert release("e1", lambda_context)["released"] is False
    assert set(slots.read(MODEL).leases) == {"next#0"} and slots.read(MODEL).in_use == 1


def test_a_failed_early_hand_off_is_logged_and_never_fails_the_image(
    slots: DynamoSlotStore, env: Any, lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    branch = _branch(lambda_context)
    warnings: list[str] = []

    class Bedrock:
        def invoke_model(self, **_: Any) -> dict[str, Any]:
            return {"body": io.BytesIO(json.dumps(_png_answer()).encode())}

    class Unreachable:
        def __getattr__(self, name: str) -> Any:
            def down(**_: Any) -> Any:
                raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, name)

            return down

    monkeypatch.setattr(clients, "bedrock_runtime", functools.cache(Bedrock))
    acquire("e1", lambda_context)
    reachable = clients.admission_dynamodb
    monkeypatch.setattr(clients, "admission_dynamodb", functools.cache(Unreachable))
    generate = importlib.import_module("image_pipeline.handlers.generate_image")
    monkeypatch.setattr(generate.logger, "warning", lambda message, **_: warnings.append(message))
    record = handler("generate_image")(branch, lambda_context)
    assert record["status"] == "SUCCEEDED"  # the image the model made is kept
    assert warnings == ["slot left to ReleaseSlot"]
    assert slots.read(MODEL).in_use == 1  # still held ...
    monkeypatch.setattr(clients, "admission_dynamodb", reachable)
    assert release("e1", lambda_context)["released"] is True  # ... until ReleaseSlot gives it back, once
    assert slots.read(MODEL) == SlotState(0, {})


def test_a_throttled_call_keeps_its_slot_for_the_retry(
    slots: DynamoSlotStore, env: Any, lambda_context: LambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    branch = _branch(lambda_context)

    class Bedrock:
        def invoke_model(self, **_: Any) -> dict[str, Any]:
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "InvokeModel"
            )

    monkeypatch.setattr(clients, "bedrock_runtime", functools.cache(Bedrock))
    acquire("e1", lambda_context)
    with pytest.raises(ModelThrottled):
        handler("generate_image")(branch, lambda_context)
    assert set(slots.read(MODEL).leases) == {"e1#0"}  # the state machine retries the call with it
