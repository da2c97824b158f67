"""The offline Bedrock Runtime stand-in, exercised through a real boto3 ``bedrock-runtime`` client."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from PIL import Image

from imagegen.standin.bedrock_server import (
    ALL_BLOCKED_MESSAGE,
    ASPECT_RATIO_SIZES,
    PROMPT_BLOCKED_MESSAGE,
    SOME_BLOCKED_MESSAGE,
    LocalBedrockServer,
    canonical_model_id,
    main,
)
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
    with LocalBedrockServer() as running:
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
    assert set(payload) == {"images", "error"}
    assert payload["error"] is None
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


def test_unknown_model_is_resource_not_found(client: Any) -> None:
    with pytest.raises(client.exceptions.ResourceNotFoundException) as exc_info:
        invoke(client, "acme.paint-v9:0", {"prompt": "x"})
    assert _error(exc_info)[:2] == ("ResourceNotFoundException", 404)


@pytest.mark.parametrize("model_id", [NOVA, SD35])
def test_body_that_is_not_json_is_a_validation_error(client: Any, model_id: str) -> None:
    with pytest.raises(client.exceptions.ValidationException) as exc_info:
        invoke(client, model_id, "{not json")
    assert _error(exc_info)[:2] == ("ValidationException", 400)


@pytest.mark.parametrize(
    ("model_id", "mutate", "field"),
    [
        (NOVA, lambda b: b["textToImageParams"].pop("text"), "text"),
        (NOVA, lambda b: b["imageGenerationConfig"].pop("width"), "width"),
        ("amazon.titan-image-generator-v2:0", lambda b: b["imageGenerationConfig"].pop("height"), "height"),
        ("amazon.titan-image-generator-v2:0", lambda b: b["imageGenerationConfig"].update(width=500), "size"),
        (
            "amazon.titan-image-generator-v2:0",
            lambda b: b["textToImageParams"].update(style="MAXIMALISM"),
            "style",
        ),
        (NOVA, lambda b: b["imageGenerationConfig"].update(numberOfImages=6), "numberOfImages"),
        (NOVA, lambda b: b["imageGenerationConfig"].update(seed=858_993_460), "seed"),
        (NOVA, lambda b: b["imageGenerationConfig"].update(width=330), "width"),
        (NOVA, lambda b: b.update(taskType="INPAINTING"), "taskType"),
        (NOVA, lambda b: b["textToImageParams"].update(text="x" * 1025), "text"),
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
        ({"prompt": "x", "mode": "image-to-image"}, "mode"),
        ({"prompt": "x", "cfg": 3}, "cfg"),
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
    assert all(result["error"] is None and len(result["images"]) == 1 for result in results)
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
        "bedrock-runtime", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1})
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
