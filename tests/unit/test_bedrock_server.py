"""The offline Bedrock Runtime stand-in, exercised through a real boto3 ``bedrock-runtime`` client."""

from __future__ import annotations

import base64
import io
import json
import logging
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from jsonschema import Draft202012Validator
from PIL import Image

from imagegen.standin.availability import Identifier, parse_identifier, signed_region
from imagegen.standin.bedrock_server import (
    ALL_BLOCKED_MESSAGE,
    ASPECT_RATIO_SIZES,
    PROMPT_BLOCKED_MESSAGE,
    SOME_BLOCKED_MESSAGE,
    LocalBedrockServer,
    canonical_model_id,
    main,
)
from imagegen.standin.body_schemas import DEFAULT_SCHEMA_DIR, SCHEMA_DIR_VARIABLE, schema_file_name
from imagegen.standin.faults import FaultPlan, parse_directives, seed_unit

AMAZON = ["amazon.titan-image-generator-v1", "amazon.titan-image-generator-v2:0", "amazon.nova-canvas-v1:0"]
STABILITY = [
    "stability.sd3-5-large-v1:0",
    "stability.stable-image-core-v1:1",
    "stability.stable-image-ultra-v1:1",
]
NOVA = "amazon.nova-canvas-v1:0"
SD35 = "stability.sd3-5-large-v1:0"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalBedrockServer]:
    """Bodies checked against the documentation's schemas; every model served whatever its lifecycle
    and Region (those checks have their own servers below)."""
    with LocalBedrockServer(check_availability=False) as running:
        yield running


@pytest.fixture(autouse=True)
def clean(server: LocalBedrockServer) -> None:
    server.faults = FaultPlan()
    server.reset_counters()


@pytest.fixture(scope="module")
def client(server: LocalBedrockServer) -> Any:
    """A plain boto3 client with dummy credentials and no retries."""
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, max_pool_connections=24),
    )


def amazon_body(
    text: str = "a red fox", *, seed: int = 7, n: int = 1, size: int = 512, **config: Any
) -> dict:
    return {
        "taskType": "TEXT_IMAGE",
        "textToImageParams": {"text": text},
        "imageGenerationConfig": {
            "numberOfImages": n,
            "quality": "standard",
            "cfgScale": 8.0,
            "seed": seed,
            "width": size,
            "height": size,
            **config,
        },
    }


def stability_body(prompt: str = "a red fox", *, seed: int = 7, **extra: Any) -> dict:
    return {"prompt": prompt, "seed": seed, "output_format": "png", **extra}


def invoke(client: Any, model_id: str, body: dict | str) -> dict:
    response = client.invoke_model(
        modelId=model_id,
        body=body if isinstance(body, str) else json.dumps(body),
        contentType="application/json",
        accept="application/json",
    )
    assert response["contentType"] == "application/json"
    assert response["ResponseMetadata"]["RequestId"]
    return json.loads(response["body"].read())


def png(b64: str) -> Image.Image:
    data = base64.b64decode(b64)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def http(server: LocalBedrockServer, method: str, path: str, body: Any = None) -> tuple[int, dict, dict]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(server.endpoint_url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


# -- response shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", AMAZON)
def test_amazon_models_return_one_png_per_image(client: Any, model_id: str) -> None:
    payload = invoke(client, model_id, amazon_body(n=3, seed=100, size=512))
    assert set(payload) == {"images"}  # "error" only when an image was blocked, as documented
    assert len(payload["images"]) == 3
    images = [png(b64) for b64 in payload["images"]]
    assert all(image.size == (512, 512) and image.mode == "RGB" for image in images)
    assert len(set(payload["images"])) == 3  # image i uses seed + i
    # Image i is the image a one-image request with seed + i gets.
    single = invoke(client, model_id, amazon_body(n=1, seed=102, size=512))
    assert single["images"] == [payload["images"][2]]


def test_nova_canvas_takes_style_and_any_valid_size(client: Any) -> None:
    body = amazon_body(size=320, width=640, height=320)
    body["textToImageParams"].update(style="FLAT_VECTOR_ILLUSTRATION", negativeText="blur")
    payload = invoke(client, NOVA, body)
    assert png(payload["images"][0]).size == (640, 320)


def test_amazon_images_are_deterministic(client: Any) -> None:
    first = invoke(client, NOVA, amazon_body(seed=5, size=320))
    second = invoke(client, NOVA, amazon_body(seed=5, size=320))
    other = invoke(client, NOVA, amazon_body(seed=6, size=320))
    assert first == second
    assert first["images"] != other["images"]


@pytest.mark.parametrize("model_id", STABILITY)
def test_stability_models_return_seed_reason_and_image(client: Any, model_id: str) -> None:
    extra = {"mode": "text-to-image"} if model_id == SD35 else {}
    payload = invoke(client, model_id, stability_body(seed=1234, aspect_ratio="1:1", **extra))
    assert payload["seeds"] == [1234]
    assert payload["finish_reasons"] == [None]
    assert len(payload["images"]) == 1
    assert png(payload["images"][0]).size == (1024, 1024)


@pytest.mark.parametrize("aspect", sorted(ASPECT_RATIO_SIZES))
def test_stability_size_follows_aspect_ratio(client: Any, aspect: str) -> None:
    payload = invoke(client, "stability.stable-image-core-v1:1", stability_body(aspect_ratio=aspect))
    width, height = png(payload["images"][0]).size
    assert (width, height) == ASPECT_RATIO_SIZES[aspect]
    w, h = (int(x) for x in aspect.split(":"))
    assert width * h == height * w
    assert 0.8e6 < width * height < 1.1e6


def test_stability_random_seed_is_chosen_and_reported(client: Any) -> None:
    payload = invoke(client, SD35, {"prompt": "no seed given"})
    assert payload["seeds"][0] > 0
    assert invoke(client, SD35, {"prompt": "no seed given", "seed": 0})["seeds"] == payload["seeds"]


def test_stability_jpeg_output(client: Any) -> None:
    payload = invoke(client, SD35, stability_body(output_format="jpeg", aspect_ratio="9:16"))
    data = base64.b64decode(payload["images"][0])
    assert data.startswith(b"\xff\xd8")
    assert Image.open(io.BytesIO(data)).size == (756, 1344)


@pytest.mark.parametrize(
    "model_id",
    [
        "us.stability.sd3-5-large-v1:0",
        "eu.stability.sd3-5-large-v1:0",
        "arn:aws:bedrock:us-east-1::foundation-model/stability.sd3-5-large-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.stability.sd3-5-large-v1:0",
    ],
)
def test_inference_profiles_and_arns_are_accepted(
    server: LocalBedrockServer, client: Any, model_id: str
) -> None:
    assert invoke(client, model_id, stability_body())["finish_reasons"] == [None]
    assert server.invocations_by_model == {SD35: 1}


def test_canonical_model_id() -> None:
    assert canonical_model_id("us.amazon.nova-canvas-v1:0") == NOVA
    assert canonical_model_id("global.amazon.nova-canvas-v1:0") == NOVA
    assert canonical_model_id(NOVA) == NOVA
    assert canonical_model_id("amazon.titan-image-generator-v1") == "amazon.titan-image-generator-v1"


# -- validation errors ---------------------------------------------------------------------------


def _error(exc_info: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = exc_info.value.response
    assert response["ResponseMetadata"]["RequestId"]
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def test_unknown_model_is_an_invalid_identifier(client: Any) -> None:
    with pytest.raises(client.exceptions.ValidationException) as exc_info:
        invoke(client, "acme.paint-v9:0", {"prompt": "x"})
    assert _error(exc_info) == ("ValidationException", 400, "The provided model identifier is invalid.")


@pytest.mark.parametrize("model_id", [NOVA, SD35])
def test_body_that_is_not_json_is_a_validation_error(client: Any, model_id: str) -> None:
    with pytest.raises(client.exceptions.ValidationException) as exc_info:
        invoke(client, model_id, "{not json")
    assert _error(exc_info)[:2] == ("ValidationException", 400)


@pytest.mark.parametrize(
    ("model_id", "mutate", "field"),
    [
        (
            NOVA,
            lambda b: b["textToImageParams"].pop("text"),
            "#/textToImageParams: required key [text] not found",
        ),
        (
            NOVA,
            lambda b: b["imageGenerationConfig"].update(width="512"),
            "width: expected type: Integer, found: String",
        ),
        ("amazon.titan-image-generator-v2:0", lambda b: b["imageGenerationConfig"].pop("height"), "512x1408"),
        ("amazon.titan-image-generator-v2:0", lambda b: b["imageGenerationConfig"].update(width=500), "size"),
        (
            "amazon.titan-image-generator-v2:0",
            lambda b: b["textToImageParams"].update(style="MAXIMALISM"),
            "style",
        ),
        (NOVA, lambda b: b["imageGenerationConfig"].update(numberOfImages=6), "numberOfImages"),
        (
            NOVA,
            lambda b: b["imageGenerationConfig"].update(seed=2_147_483_647),
            "2147483647 is not less or equal to 2147483646",
        ),
        (
            NOVA,
            lambda b: b["imageGenerationConfig"].update(width=330),
            "width: 330: each side must be evenly divisible by 16",
        ),
        (NOVA, lambda b: b.update(taskType="INPAINTING"), "#/taskType: INPAINTING is not a valid enum value"),
        (
            NOVA,
            lambda b: b["textToImageParams"].update(text="x" * 1025),
            "text: expected maxLength: 1024, actual: 1025",
        ),
        (
            NOVA,
            lambda b: b["imageGenerationConfig"].update(width=2048, height=2048),
            "pixel count must be less than 4,194,304",
        ),
        (NOVA, lambda b: b["imageGenerationConfig"].update(width=1600, height=320), "aspect ratio"),
    ],
)
def test_invalid_amazon_bodies_name_the_field(client: Any, model_id: str, mutate: Any, field: str) -> None:
    body = amazon_body()
    mutate(body)
    with pytest.raises(client.exceptions.ValidationException) as exc_info:
        invoke(client, model_id, body)
    code, status, message = _error(exc_info)
    assert (code, status) == ("ValidationException", 400)
    assert field in message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"seed": 1}, "prompt"),
        ({"prompt": "x", "aspect_ratio": "7:3"}, "aspect_ratio"),
        ({"prompt": "x", "seed": -1}, "seed"),
        ({"prompt": "x", "output_format": "gif"}, "output_format"),
        ({"prompt": "x", "mode": "image-to-image"}, "#: required key [image] not found"),
        ({"prompt": "x", "cfg": 3}, "#: extraneous key [cfg] is not permitted"),
    ],
)
def test_invalid_stability_bodies_name_the_field(client: Any, body: dict, field: str) -> None:
    with pytest.raises(client.exceptions.ValidationException) as exc_info:
        invoke(client, SD35, body)
    assert field in _error(exc_info)[2]


# -- server-wide faults --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "code", "status"),
    [
        (FaultPlan(throttle_first=1), "ThrottlingException", 429),
        (FaultPlan(timeout_first=1), "ModelTimeoutException", 408),
        (FaultPlan(fail_first=1), "ServiceUnavailableException", 503),
        (FaultPlan(fail_first=1, fail_status=500), "InternalServerException", 500),
        (FaultPlan(fail_first=1, fail_status=424), "ModelErrorException", 424),
        (FaultPlan(access_denied_models={SD35}), "AccessDeniedException", 403),
        (FaultPlan(throttle_rate=1.0), "ThrottlingException", 429),
        (FaultPlan(timeout_rate=1.0), "ModelTimeoutException", 408),
        (FaultPlan(fail_rate=1.0, fail_status="InternalServerException"), "InternalServerException", 500),
    ],
)
def test_faults_raise_the_matching_boto3_exception(
    server: LocalBedrockServer, client: Any, plan: FaultPlan, code: str, status: int
) -> None:
    server.faults = plan
    with pytest.raises(getattr(client.exceptions, code)) as exc_info:
        invoke(client, SD35, stability_body())
    assert _error(exc_info)[:2] == (code, status)
    assert server.outcomes == {code: 1}


def test_first_k_throttles_then_succeeds(server: LocalBedrockServer, client: Any) -> None:
    server.faults = FaultPlan(throttle_first=2)
    for _ in range(2):
        with pytest.raises(client.exceptions.ThrottlingException):
            invoke(client, NOVA, amazon_body(size=320))
    assert len(invoke(client, NOVA, amazon_body(size=320))["images"]) == 1
    assert server.invocations == 3
    assert server.outcomes == {"ThrottlingException": 2, "success": 1}


def test_first_k_budgets_run_in_sequence(server: LocalBedrockServer, client: Any) -> None:
    server.faults = FaultPlan(throttle_first=1, timeout_first=1, fail_first=1)
    expected = [client.exceptions.ThrottlingException, client.exceptions.ModelTimeoutException]
    expected.append(client.exceptions.ServiceUnavailableException)
    for error in expected:
        with pytest.raises(error):
            invoke(client, SD35, stability_body())
    assert invoke(client, SD35, stability_body())["images"]


def test_replacing_the_plan_restarts_the_budgets(server: LocalBedrockServer, client: Any) -> None:
    server.faults = FaultPlan(throttle_first=1)
    with pytest.raises(client.exceptions.ThrottlingException):
        invoke(client, SD35, stability_body())
    invoke(client, SD35, stability_body())
    server.faults = FaultPlan(throttle_first=1)
    with pytest.raises(client.exceptions.ThrottlingException):
        invoke(client, SD35, stability_body())


def test_rate_faults_are_reproducible_from_random_seed(server: LocalBedrockServer, client: Any) -> None:
    def run() -> list[str]:
        server.faults = FaultPlan(throttle_rate=0.4, timeout_rate=0.3, random_seed=99)
        outcomes = []
        for _ in range(10):
            try:
                invoke(client, NOVA, amazon_body(size=320))
                outcomes.append("ok")
            except ClientError as exc:
                outcomes.append(exc.response["Error"]["Code"])
        return outcomes

    first = run()
    assert first == run()
    assert {"ok", "ThrottlingException", "ModelTimeoutException"} <= set(first)


def test_retries_get_through_first_k_throttling(server: LocalBedrockServer) -> None:
    server.faults = FaultPlan(throttle_first=1)
    retrying = server.client(max_attempts=3)
    assert invoke(retrying, SD35, stability_body())["images"]
    assert server.invocations == 2


# -- content filters -------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", AMAZON)
def test_amazon_blocked_prompt_is_a_validation_error(
    server: LocalBedrockServer, client: Any, model_id: str
) -> None:
    server.faults = FaultPlan(block_prompt_terms=["Forbidden"])
    with pytest.raises(client.exceptions.ValidationException) as exc_info:
        invoke(client, model_id, amazon_body("a FORBIDDEN thing"))
    assert _error(exc_info)[2] == PROMPT_BLOCKED_MESSAGE
    assert invoke(client, model_id, amazon_body("an allowed thing"))["images"]


@pytest.mark.parametrize("model_id", STABILITY)
def test_stability_blocked_prompt_is_a_finish_reason(
    server: LocalBedrockServer, client: Any, model_id: str
) -> None:
    server.faults = FaultPlan(block_prompt_terms=["forbidden"])
    payload = invoke(client, model_id, stability_body("a Forbidden thing", seed=3))
    assert payload == {"seeds": [3], "finish_reasons": ["Filter reason: prompt"], "images": []}
    assert server.outcomes == {"filtered-prompt": 1}


@pytest.mark.parametrize("model_id", AMAZON)
def test_amazon_blocked_outputs(server: LocalBedrockServer, client: Any, model_id: str) -> None:
    server.faults = FaultPlan(block_output_seeds={11})
    some = invoke(client, model_id, amazon_body(seed=10, n=3))
    assert some["error"] == SOME_BLOCKED_MESSAGE
    assert len(some["images"]) == 2
    everything = invoke(client, model_id, amazon_body(seed=11, n=1))
    assert everything == {"images": [], "error": ALL_BLOCKED_MESSAGE}


@pytest.mark.parametrize("model_id", STABILITY)
def test_stability_blocked_output_is_a_finish_reason(
    server: LocalBedrockServer, client: Any, model_id: str
) -> None:
    server.faults = FaultPlan(block_output_seeds={8})
    payload = invoke(client, model_id, stability_body(seed=8))
    assert payload == {"seeds": [8], "finish_reasons": ["Filter reason: output image"], "images": []}


def test_block_output_rate_depends_only_on_the_seed(server: LocalBedrockServer, client: Any) -> None:
    plan = FaultPlan(block_output_rate=0.5, random_seed=3)
    server.faults = plan
    blocked = {
        seed for seed in range(1, 9) if invoke(client, SD35, stability_body(seed=seed))["images"] == []
    }
    assert blocked == {seed for seed in range(1, 9) if seed_unit(3, seed) < 0.5}
    assert 0 < len(blocked) < 8
    server.faults = FaultPlan(block_output_rate=0.5, random_seed=3)
    assert invoke(client, SD35, stability_body(seed=min(blocked)))["images"] == []


# -- per-request directives -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("directive", "code"),
    [
        ("[[fault:throttle]]", "ThrottlingException"),
        ("[[fault:timeout]]", "ModelTimeoutException"),
        ("[[fault:error]]", "ServiceUnavailableException"),
        ("[[fault:unavailable]]", "ServiceUnavailableException"),
        ("[[fault:internal]]", "InternalServerException"),
        ("[[FAULT:Model-Error]]", "ModelErrorException"),
        ("[[fault:denied]]", "AccessDeniedException"),
    ],
)
@pytest.mark.parametrize("model_id", [NOVA, SD35])
def test_error_directives(client: Any, model_id: str, directive: str, code: str) -> None:
    body = (
        amazon_body(f"a fox {directive}", size=320)
        if model_id == NOVA
        else stability_body(f"{directive} a fox")
    )
    with pytest.raises(getattr(client.exceptions, code)):
        invoke(client, model_id, body)


def test_error_directive_uses_the_plan_fail_status(server: LocalBedrockServer, client: Any) -> None:
    server.faults = FaultPlan(fail_status=500)
    with pytest.raises(client.exceptions.InternalServerException):
        invoke(client, SD35, stability_body("[[fault:error]] x"))


def test_counted_directive_fails_only_the_first_calls(server: LocalBedrockServer, client: Any) -> None:
    body = stability_body("a fox [[fault:throttle=2]]", seed=21)
    for _ in range(2):
        with pytest.raises(client.exceptions.ThrottlingException):
            invoke(client, SD35, body)
    assert invoke(client, SD35, body)["images"]
    # Another seed (another Map branch) has its own count.
    with pytest.raises(client.exceptions.ThrottlingException):
        invoke(client, SD35, stability_body("a fox [[fault:throttle=2]]", seed=22))


def test_counted_directives_apply_in_order(client: Any) -> None:
    body = amazon_body("[[fault:throttle=1]][[fault:timeout=1]] a fox", seed=31, size=320)
    with pytest.raises(client.exceptions.ThrottlingException):
        invoke(client, NOVA, body)
    with pytest.raises(client.exceptions.ModelTimeoutException):
        invoke(client, NOVA, body)
    assert invoke(client, NOVA, body)["images"]


def test_block_directives(client: Any) -> None:
    with pytest.raises(client.exceptions.ValidationException) as exc_info:
        invoke(client, NOVA, amazon_body("a fox [[fault:block-prompt]]", size=320))
    assert _error(exc_info)[2] == PROMPT_BLOCKED_MESSAGE
    payload = invoke(client, NOVA, amazon_body("a fox [[fault:block-output]]", n=2, size=320))
    assert payload == {"images": [], "error": ALL_BLOCKED_MESSAGE}
    assert invoke(client, SD35, stability_body("[[fault:block-prompt]] a fox"))["finish_reasons"] == [
        "Filter reason: prompt"
    ]
    assert invoke(client, SD35, stability_body("[[fault:block-output]] a fox"))["finish_reasons"] == [
        "Filter reason: output image"
    ]


def test_directives_are_removed_before_rendering(client: Any) -> None:
    plain = invoke(client, NOVA, amazon_body("a red fox", seed=4, size=320))
    with_directive = invoke(client, NOVA, amazon_body("a red [[fault:latency=0]] fox", seed=4, size=320))
    assert plain == with_directive


def test_latency_directive(client: Any) -> None:
    started = time.perf_counter()
    invoke(client, SD35, stability_body("[[fault:latency=0.3]] slow"))
    assert time.perf_counter() - started >= 0.3


def test_unknown_directive_is_a_validation_error(client: Any) -> None:
    with pytest.raises(client.exceptions.ValidationException) as exc_info:
        invoke(client, SD35, stability_body("[[fault:throtle]] typo"))
    assert "throtle" in _error(exc_info)[2]


def test_parse_directives() -> None:
    directives, prompt = parse_directives(
        "a [[fault:throttle=3]] fox [[ fault : latency = 0.25 ]] [[fault:block-output]]"
    )
    assert prompt == "a fox"
    assert [(d.name, d.times, d.latency) for d in directives] == [
        ("throttle", 3, None),
        ("latency", None, 0.25),
        ("block-output", None, None),
    ]
    assert parse_directives("no directives  here") == ([], "no directives  here")
    for bad in ("[[fault:nope]]", "[[fault:throttle=0]]", "[[fault:latency=x]]", "[[fault:block-output=2]]"):
        with pytest.raises(ValueError):
            parse_directives(bad)


# -- latency and concurrency -------------------------------------------------------------------


def test_the_answer_comes_after_the_plan_latency(server: LocalBedrockServer, client: Any) -> None:
    server.faults = FaultPlan(latency_seconds=0.25, latency_jitter_seconds=0.05)
    started = time.perf_counter()
    invoke(client, NOVA, amazon_body(size=320))
    assert time.perf_counter() - started >= 0.25


def test_an_error_also_comes_after_the_plan_latency(server: LocalBedrockServer, client: Any) -> None:
    """The latency is the model's time to answer, whatever the answer: a throttled call is not faster."""
    server.faults = FaultPlan(latency_seconds=0.2, throttle_first=1)
    started = time.perf_counter()
    with pytest.raises(client.exceptions.ThrottlingException):
        invoke(client, NOVA, amazon_body(size=320))
    assert time.perf_counter() - started >= 0.2
    assert server.outcomes == {"ThrottlingException": 1}


def test_parallel_calls_all_succeed_and_are_counted(server: LocalBedrockServer, client: Any) -> None:
    server.faults = FaultPlan(latency_seconds=0.2)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda i: invoke(client, NOVA, amazon_body(seed=i, size=320)), range(20)))
    assert time.perf_counter() - started >= 0.2
    assert all("error" not in result and len(result["images"]) == 1 for result in results)
    assert len({result["images"][0] for result in results}) == 20
    assert server.invocations == 20
    assert server.invocations_by_model == {NOVA: 20}
    assert server.outcomes == {"success": 20}
    assert server.max_in_flight > 1
    assert server.stats()["in_flight"] == 0


def test_first_k_is_exact_under_concurrency(server: LocalBedrockServer, client: Any) -> None:
    server.faults = FaultPlan(throttle_first=5)

    def call(i: int) -> str:
        try:
            invoke(client, NOVA, amazon_body(seed=i, size=320))
            return "ok"
        except ClientError as exc:
            return exc.response["Error"]["Code"]

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = Counter(pool.map(call, range(20)))
    assert outcomes == {"ThrottlingException": 5, "ok": 15}
    assert server.invocations == 20


# -- admin endpoints ---------------------------------------------------------------------------


def test_put_faults_replaces_the_plan(server: LocalBedrockServer, client: Any) -> None:
    status, _, plan = http(server, "PUT", "/__faults", {"throttle_first": 1, "block_prompt_terms": ["bad"]})
    assert status == 200
    assert plan["throttle_first"] == 1
    assert server.faults == FaultPlan(throttle_first=1, block_prompt_terms=["bad"])
    assert http(server, "GET", "/__faults")[2] == plan
    with pytest.raises(client.exceptions.ThrottlingException):
        invoke(client, SD35, stability_body())


@pytest.mark.parametrize(
    "body", [{"throttle_frist": 1}, {"throttle_rate": 2}, {"fail_status": 404}, [1], b"{oops"]
)
def test_put_faults_rejects_bad_plans(server: LocalBedrockServer, body: Any) -> None:
    status, headers, payload = http(server, "PUT", "/__faults", body)
    assert status == 400
    assert headers["x-amzn-ErrorType"] == "ValidationException"
    assert "fault plan" in payload["message"].lower()
    assert server.faults == FaultPlan()


def test_stats_endpoint(server: LocalBedrockServer, client: Any) -> None:
    invoke(client, SD35, stability_body())
    invoke(client, "us.amazon.nova-canvas-v1:0", amazon_body(n=2, size=320))
    status, _, stats = http(server, "GET", "/__stats")
    assert status == 200
    assert stats["invocations"] == 2
    assert stats["by_model"] == {SD35: 1, NOVA: 1}
    assert stats["outcomes"] == {"success": 2}
    assert stats["images"] == 3
    assert stats["faults"] == FaultPlan().to_dict()
    requests = http(server, "GET", "/__requests")[2]["requests"]
    assert [(r["model_id"], r["seed"], r["status"]) for r in requests] == [(SD35, 7, 200), (NOVA, 7, 200)]
    assert http(server, "DELETE", "/__stats")[2]["invocations"] == 0
    assert server.invocations == 0


def test_unknown_route_is_404(server: LocalBedrockServer) -> None:
    status, headers, _ = http(server, "GET", "/nothing")
    assert status == 404
    assert headers["x-amzn-ErrorType"] == "UnknownOperationException"


def test_fault_plan_round_trip_and_validation() -> None:
    plan = FaultPlan(
        latency_seconds=0.5,
        throttle_first=2,
        block_output_seeds={3, 1},
        access_denied_models={NOVA},
        fail_status="ModelErrorException",  # type: ignore[arg-type]
    )
    data = plan.to_dict()
    assert data["block_output_seeds"] == [1, 3]
    assert data["fail_status"] == 424
    assert json.loads(json.dumps(data)) == data
    assert FaultPlan.from_dict(data) == plan
    for bad in (
        {"nope": 1},
        {"throttle_first": -1},
        {"throttle_rate": 0.6, "fail_rate": 0.6},
        {"latency_seconds": "1"},
    ):
        with pytest.raises(ValueError):
            FaultPlan.from_dict(bad)


# -- lifecycle -----------------------------------------------------------------------------------


def test_environment_variable_endpoint_and_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    local = LocalBedrockServer()
    with pytest.raises(RuntimeError):
        _ = local.endpoint_url
    url = local.start()
    assert url.startswith("http://127.0.0.1:") and url == local.endpoint_url
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    plain = boto3.client(
        "bedrock-runtime", region_name="us-west-2", config=Config(retries={"total_max_attempts": 1})
    )
    assert invoke(plain, SD35, stability_body())["images"]
    local.stop()
    local.stop()  # idempotent
    with pytest.raises((EndpointConnectionError, ClientError)):
        invoke(plain, SD35, stability_body())


def test_command_line_entry_point() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imagegen.standin.bedrock_server",
            "--port",
            "0",
            "--quiet",
            "--throttle-first",
            "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "not a model" in line
        url = line.rsplit(" at ", 1)[1].strip()
        with urllib.request.urlopen(url + "/__faults", timeout=10) as response:
            assert json.loads(response.read())["throttle_first"] == 1
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_command_line_rejects_a_bad_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--faults", '{"throttle_rate": 5}']) == 2
    assert "throttle_rate" in capsys.readouterr().err


# -- as strict as the documentation: bodies ------------------------------------------------------

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas" / "bedrock"
SERVICE = "stability.stable-fast-upscale-v1:0"


def b64_image(width: int = 256, height: int = 256, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 80, 120)).save(buffer, fmt)
    return base64.b64encode(buffer.getvalue()).decode()


def _with_images(value: Any) -> Any:
    """A documented example with its "<base64>" placeholders replaced by a real image."""
    if value == "<base64>":
        return b64_image()
    if isinstance(value, dict):
        return {key: _with_images(item) for key, item in value.items()}
    return value


DOCUMENTED_EXAMPLES = [
    (json.loads(path.read_text())["x-model-id"], example)
    for path in sorted(SCHEMA_DIR.glob("*.json"))
    if path.name != "responses.json"
    for example in json.loads(path.read_text()).get("examples", [])
]


def test_every_model_the_schemas_describe_has_a_documented_example() -> None:
    assert {model for model, _ in DOCUMENTED_EXAMPLES} == {
        json.loads(path.read_text())["x-model-id"]
        for path in SCHEMA_DIR.glob("*.json")
        if path.name != "responses.json"
    }


@pytest.mark.parametrize(("model_id", "example"), DOCUMENTED_EXAMPLES)
def test_documented_examples_are_accepted_and_answered_as_documented(
    client: Any, model_id: str, example: dict
) -> None:
    payload = invoke(client, model_id, _with_images(example))
    responses = json.loads((SCHEMA_DIR / "responses.json").read_text())
    family = next(name for name, models in responses["x-families"].items() if model_id in models)
    Draft202012Validator({**responses, "$ref": f"#/$defs/{family}"}).validate(payload)
    assert payload["images"]


def test_a_service_answers_with_an_image_made_from_its_input(client: Any) -> None:
    payload = invoke(
        client, "us.stability.stable-image-remove-background-v1:0", {"image": b64_image(320, 200)}
    )
    answer = png(payload["images"][0])
    assert answer.size == (320, 200) and answer.mode == "RGBA"  # tests/unit/test_standin_image_ops.py


@pytest.mark.parametrize(
    ("model_id", "body", "expected"),
    [
        (
            SD35,
            {"prompt": "x", "mode": "image-to-image", "image": b64_image(32, 32), "strength": 0.5},
            "#/image: 32x32: each side must be at least 64 pixels",
        ),
        (
            SD35,
            {"prompt": "x", "mode": "image-to-image", "image": b64_image(64, 64, "GIF"), "strength": 0.5},
            "#/image: image format gif is not one of jpeg, png, webp",
        ),
        (
            SD35,
            {"prompt": "x", "mode": "image-to-image", "image": "not an image", "strength": 0.5},
            "#/image: the value is not a base64-encoded image",
        ),
        (
            SERVICE,
            {"image": b64_image(1600, 600)},
            "#/image: 1600x600: the width must be at most 1536 pixels",
        ),
        (
            "stability.stable-image-inpaint-v1:0",
            {"prompt": "x", "image": b64_image(1000, 300)},
            "aspect ratio (width/height) must be from 0.4 to 2.5",
        ),
        (
            "stability.stable-outpaint-v1:0",
            {"image": b64_image()},
            "#: no subschema matched out of the total 4",
        ),
        (
            "amazon.titan-image-generator-v2:0",
            {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "x", "controlMode": "CANNY_EDGE"}},
            "#/textToImageParams: property [conditionImage] is required",
        ),
        (
            "stability.stable-image-ultra-v1:1",
            {"prompt": "x", "seed": 1.5e10},
            "#/seed: 15000000000.0 is not less or equal to 4294967295",
        ),
        (
            NOVA,
            {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": ""}},
            "#/textToImageParams/text: expected minLength: 1, actual: 0",
        ),
        (
            NOVA,
            {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "x", "negativeText": 3}},
            "#/textToImageParams/negativeText: expected type: String, found: Integer",
        ),
    ],
)
def test_what_only_the_documentation_says_is_refused(
    client: Any, model_id: str, body: dict, expected: str
) -> None:
    with pytest.raises(client.exceptions.ValidationException) as exc_info:
        invoke(client, model_id, body)
    code, status, message = _error(exc_info)
    assert (code, status) == ("ValidationException", 400)
    assert message.startswith("Malformed input request: ") and expected in message
    assert message.endswith(", please reformat your input and try again.")


def test_bedrock_wording_for_missing_and_extraneous_keys(client: Any) -> None:
    with pytest.raises(client.exceptions.ValidationException) as exc_info:
        invoke(client, "stability.stable-image-ultra-v1:1", {"x": 1})
    assert _error(exc_info)[2] == (
        "Malformed input request: #: extraneous key [x] is not permitted#: required key [prompt] not found, "
        "please reformat your input and try again."
    )


def test_titan_sizes_are_the_listed_pairs_and_the_default_is_taken(client: Any) -> None:
    titan = "amazon.titan-image-generator-v2:0"
    bare = {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "x"}}
    assert png(invoke(client, titan, bare)["images"][0]).size == (1408, 1408)  # the documented default
    assert invoke(client, titan, amazon_body(width=1173, height=640))["images"]
    with pytest.raises(client.exceptions.ValidationException):
        invoke(client, titan, amazon_body(width=640, height=1173))


def test_nova_default_size_is_1024(client: Any) -> None:
    payload = invoke(client, NOVA, {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": "x"}})
    assert png(payload["images"][0]).size == (1024, 1024)


def test_unconfirmed_readings_apply_only_when_asked() -> None:
    nova_seed = amazon_body(size=320, seed=858_993_460)
    webp = stability_body(output_format="webp")
    with LocalBedrockServer(check_availability=False) as documented:
        assert invoke(documented.client(), NOVA, nova_seed)["images"]
        with pytest.raises(ClientError):
            invoke(documented.client(), "stability.stable-image-core-v1:1", webp)
    with LocalBedrockServer(check_availability=False, unconfirmed=True) as leads:
        with pytest.raises(ClientError) as exc_info:
            invoke(leads.client(), NOVA, nova_seed)
        assert "858993460 is not less or equal to 858993459" in _error(exc_info)[2]
        data = base64.b64decode(invoke(leads.client(), "stability.stable-image-core-v1:1", webp)["images"][0])
        assert data[8:12] == b"WEBP"


def test_without_a_schema_directory_bodies_are_unchecked_and_it_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "no-schemas"
    with caplog.at_level(logging.WARNING, logger="imagegen.standin"):
        first = LocalBedrockServer(check_availability=False, schema_dir=missing)
        LocalBedrockServer(check_availability=False, schema_dir=missing)
    assert [r.getMessage() for r in caplog.records].count(
        f"Bedrock stand-in: no schema directory at {missing}; InvokeModel bodies are not checked "
        f"(set {SCHEMA_DIR_VARIABLE} or --schema-dir to check them)"
    ) == 1
    with first:
        assert invoke(first.client(), SD35, stability_body(cfg=3))["images"]


def test_the_schema_directory_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SCHEMA_DIR_VARIABLE, str(tmp_path))
    assert LocalBedrockServer().schemas.directory == tmp_path
    monkeypatch.delenv(SCHEMA_DIR_VARIABLE)
    assert LocalBedrockServer().schemas.directory == DEFAULT_SCHEMA_DIR == SCHEMA_DIR
    assert schema_file_name("stability.sd3-5-large-v1:0") == "stability.sd3-5-large-v1_0.json"


# -- as strict as the documentation: which models, where, until when -------------------------------

CORE = "stability.stable-image-core-v1:1"
BEFORE_NOVA_EOL = date(2026, 9, 29)


@pytest.fixture(scope="module")
def strict() -> Iterator[LocalBedrockServer]:
    """The default server: today's date, the Region each call is signed for."""
    with LocalBedrockServer() as running:
        yield running


@pytest.fixture(autouse=True)
def clean_strict(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "strict" in request.fixturenames:
        running = request.getfixturevalue("strict")
        running.faults, running.today, running.region = FaultPlan(), None, None


def rejected(server: LocalBedrockServer, model_id: str, body: dict, region: str) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as exc_info:
        invoke(server.client(region_name=region), model_id, body)
    return _error(exc_info)


NOVA_BODY = amazon_body(size=320)
CORE_BODY = stability_body(aspect_ratio="1:1")
FAST_UPSCALE_BODY = {"image": b64_image(64, 64)}


@pytest.mark.parametrize(
    ("model_id", "body", "eol"),
    [
        (NOVA, NOVA_BODY, date(2026, 9, 30)),
        ("amazon.titan-image-generator-v2:0", amazon_body(), date(2026, 6, 30)),
        ("amazon.titan-image-generator-v1", amazon_body(), date(2025, 8, 15)),
    ],
)
def test_a_model_past_its_end_of_life_is_not_found(
    strict: LocalBedrockServer, model_id: str, body: dict, eol: date
) -> None:
    assert strict.today is None  # the current date: every one of these is past its end of life today
    assert rejected(strict, model_id, body, "us-east-1") == (
        "ResourceNotFoundException",
        404,
        "This model version has reached the end of its life. Please refer to the AWS documentation for more details.",
    )
    strict.today = eol
    assert rejected(strict, model_id, body, "us-east-1")[0] == "ResourceNotFoundException"


def test_the_day_before_end_of_life_the_model_answers(strict: LocalBedrockServer) -> None:
    strict.today = BEFORE_NOVA_EOL
    assert invoke(strict.client(region_name="us-east-1"), NOVA, NOVA_BODY)["images"]


@pytest.mark.parametrize(
    ("model_id", "body", "region"),
    [
        (CORE, CORE_BODY, "us-east-1"),  # Stable Image Core: us-west-2 only
        (SD35, CORE_BODY, "eu-west-1"),
        (NOVA, NOVA_BODY, "us-west-2"),  # aws-samples/amazon-bedrock-workshop#340
        ("us.stability.stable-fast-upscale-v1:0", FAST_UPSCALE_BODY, "eu-west-1"),  # not a source Region
        ("us.stability.stable-image-core-v1:1", CORE_BODY, "us-west-2"),  # no such profile
        ("eu.stability.sd3-5-large-v1:0", CORE_BODY, "us-west-2"),
        ("acme.paint-v9:0", CORE_BODY, "us-west-2"),
    ],
)
def test_a_model_the_region_does_not_offer_is_an_invalid_identifier(
    strict: LocalBedrockServer, model_id: str, body: dict, region: str
) -> None:
    strict.today = BEFORE_NOVA_EOL
    assert rejected(strict, model_id, body, region) == (
        "ValidationException",
        400,
        "The provided model identifier is invalid.",
    )


def test_the_region_signed_for_decides_unless_the_server_has_one(strict: LocalBedrockServer) -> None:
    assert invoke(strict.client(region_name="us-west-2"), CORE, CORE_BODY)["images"]
    strict.region = "us-west-2"
    assert invoke(strict.client(region_name="us-east-1"), CORE, CORE_BODY)["images"]
    strict.region = "us-east-1"
    assert rejected(strict, CORE, CORE_BODY, "us-west-2")[2] == "The provided model identifier is invalid."


def test_a_profile_only_model_called_by_its_model_id(strict: LocalBedrockServer) -> None:
    strict.reset_counters()
    assert rejected(strict, SERVICE, FAST_UPSCALE_BODY, "us-east-2") == (
        "ValidationException",
        400,
        f"Invocation of model ID {SERVICE} with on-demand throughput isn\u2019t supported. Retry your "
        "request with the ID or ARN of an inference profile that contains this model.",
    )
    arn = f"arn:aws:bedrock:us-east-2:123456789012:inference-profile/us.{SERVICE}"
    for model_id in (f"us.{SERVICE}", arn):
        assert invoke(strict.client(region_name="us-east-2"), model_id, FAST_UPSCALE_BODY)["images"]
    assert strict.invocations_by_model[SERVICE] == 3


def test_a_marketplace_model_needs_the_permission_until_the_account_is_subscribed() -> None:
    plan = FaultPlan(no_marketplace_permission=True)
    with LocalBedrockServer(faults=plan) as server:
        code, status, message = rejected(server, SD35, CORE_BODY, "us-west-2")
        assert (code, status) == ("AccessDeniedException", 403)
        assert message.startswith(
            "Model access is denied due to IAM user or service role is not authorized to perform the required "
            "AWS Marketplace actions (aws-marketplace:ViewSubscriptions, aws-marketplace:Subscribe)"
        )
        assert server.subscribed_models == frozenset()
        server.today = BEFORE_NOVA_EOL
        assert invoke(server.client(region_name="us-east-1"), NOVA, NOVA_BODY)[
            "images"
        ]  # Amazon: no Marketplace
        server.faults = FaultPlan()  # the permissions are granted
        with pytest.raises(ClientError):  # a refused body subscribes nothing
            invoke(server.client(region_name="us-west-2"), SD35, {"prompt": "x", "cfg": 1})
        assert server.subscribed_models == frozenset()
        assert invoke(server.client(region_name="us-west-2"), SD35, CORE_BODY)["images"]
        assert server.subscribed_models == {SD35}
        server.faults = plan  # taken away again: the account stays subscribed
        assert invoke(server.client(region_name="us-west-2"), SD35, CORE_BODY)["images"]
        assert rejected(server, CORE, CORE_BODY, "us-west-2")[0] == "AccessDeniedException"  # not this one


@pytest.mark.parametrize(
    ("model_id", "body", "region", "status", "code"),
    [
        (NOVA, NOVA_BODY, "us-east-1", 404, "ResourceNotFoundException"),
        (CORE, CORE_BODY, "us-east-1", 400, "ValidationException"),
        (CORE, {"prompt": 3}, "us-west-2", 400, "ValidationException"),
    ],
)
def test_errors_are_in_the_wire_format_botocore_parses(
    strict: LocalBedrockServer, model_id: str, body: dict, region: str, status: int, code: str
) -> None:
    headers = {
        "Authorization": f"AWS4-HMAC-SHA256 Credential=x/20261130/{region}/bedrock/aws4_request, Signature=0"
    }
    request = urllib.request.Request(
        f"{strict.endpoint_url}/model/{model_id}/invoke",
        data=json.dumps(body).encode(),
        method="POST",
        headers=headers,
    )
    with pytest.raises(urllib.error.HTTPError) as exc_info:
        urllib.request.urlopen(request, timeout=10)
    assert exc_info.value.code == status
    assert exc_info.value.headers["x-amzn-ErrorType"] == code
    assert exc_info.value.headers["Content-Type"] == "application/json"
    assert set(json.loads(exc_info.value.read())) == {"message"}


def test_parse_identifier_and_signed_region() -> None:
    assert parse_identifier("us.stability.x-v1:0") == Identifier("stability.x-v1:0", "us.stability.x-v1:0")
    assert parse_identifier("arn:aws:bedrock:us-west-2::foundation-model/stability.x-v1:0") == Identifier(
        "stability.x-v1:0", None
    )
    assert parse_identifier("amazon.titan-image-generator-v1") == Identifier(
        "amazon.titan-image-generator-v1", None
    )
    scope = "AWS4-HMAC-SHA256 Credential=AKID/20261130/eu-west-1/bedrock/aws4_request, SignedHeaders=host"
    assert signed_region(scope) == "eu-west-1"
    assert signed_region(None) is None and signed_region("Bearer x") is None


def test_command_line_options_for_strictness(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for option in (
        "--region",
        "--today",
        "--no-availability-checks",
        "--schema-dir",
        "--unconfirmed",
        "--no-marketplace-permission",
    ):
        assert option in out
