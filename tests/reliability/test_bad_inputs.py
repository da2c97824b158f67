"""Bad inputs: every one is a clear 4xx from the API, with zero executions started and zero objects
written, and the named error ``InvalidRequest`` for console and event runs, with zero model calls.

The catalogue is ``imagegen.testing.bad_inputs`` (shared with ``tools/reliability_run.py``): the unit
suite's request-level list plus unicode, traversal, type and model cases, plus bodies only HTTP can
carry.

Console runs: every request-level input goes to the workflow's first step through the engine's
Lambda router (what the state machine's first state invokes; the exception's class is the error
name), and a spread sample runs the whole state machine. ``IMAGEGEN_RELIABILITY_FULL=1`` runs every
input through the state machine (``tools/reliability_run.py`` always does).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from image_pipeline.core.jobs import ApiError, validate_submission
from image_pipeline.core.refine import NOT_FOUND
from image_pipeline.core.settings import Settings
from image_pipeline.core.tenancy import Caller, anonymous_caller
from PIL import Image

from imagegen.runtime.local_api import put_request_event
from imagegen.testing.bad_inputs import (
    BAD_REQUESTS,
    DEEPLY_NESTED,
    DISGUISED_BAD_REQUESTS,
    HTTP_BAD_CASES,
    SCHEMA_BAD_REQUESTS,
    HttpCase,
    distinct_count,
)
from tests.reliability.support import RELIABILITY_API_KEY_ID
from tests.support import count_executions

ROUTES = ("/images", "/jobs")
FULL = os.environ.get("IMAGEGEN_RELIABILITY_FULL") == "1"
_IDS = [f"{i:03d}-{field}" for i, (_, field) in enumerate(SCHEMA_BAD_REQUESTS)]


def _body(raw: Any) -> bytes:
    """UTF-8 JSON as clients send it (escaped only where UTF-8 cannot carry it: lone surrogates)."""
    try:
        return json.dumps(raw, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(raw).encode()


def _post_json(api: httpx.Client, route: str, raw: Any) -> httpx.Response:
    return api.post(route, content=_body(raw), headers={"Content-Type": "application/json"})


def _post_case(api: httpx.Client, route: str, case: HttpCase) -> httpx.Response:
    headers = {"Content-Type": case.content_type} if case.content_type else {}
    return api.post(route, content=case.body, headers=headers)


def _assert_clear_4xx(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert body["error"] == "InvalidRequest"
    assert field in [d["field"] for d in body["details"]], body
    assert field in body["message"]


def test_the_catalogue_extends_the_unit_list_to_well_over_forty_distinct_inputs() -> None:
    assert SCHEMA_BAD_REQUESTS[: len(BAD_REQUESTS)] == BAD_REQUESTS
    assert distinct_count() >= 100
    assert len({repr(raw) for raw, _ in SCHEMA_BAD_REQUESTS}) == len(SCHEMA_BAD_REQUESTS)


# -- the API ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    executions: int
    objects: set[str]
    calls: int


@pytest.fixture(scope="module")
def client(local_server: Any) -> Iterator[httpx.Client]:
    """One HTTP client of the local API for the module (hundreds of cheap calls)."""
    with httpx.Client(base_url=local_server.url, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def before_api(offline_engine: Any) -> Counts:
    """Executions, objects and model calls before the first API test of this module."""
    return Counts(
        count_executions(offline_engine), set(offline_engine.list_keys()), offline_engine.bedrock.invocations
    )


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("raw", "field"), SCHEMA_BAD_REQUESTS, ids=_IDS)
def test_api_answers_400_naming_the_field(
    client: httpx.Client, before_api: Counts, route: str, raw: Any, field: str
) -> None:
    _assert_clear_4xx(_post_json(client, route, raw), 400, field)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", HTTP_BAD_CASES, ids=[c.name for c in HTTP_BAD_CASES])
def test_api_answers_4xx_to_bodies_that_are_not_a_request(
    client: httpx.Client, before_api: Counts, route: str, case: HttpCase
) -> None:
    _assert_clear_4xx(_post_case(client, route, case), case.status, case.field)


def test_api_caps_a_chunked_body_without_content_length(api: httpx.Client, before_api: Counts) -> None:
    chunks = (b'{"prompt": "' + b"x" * 8192 for _ in range(10))
    response = api.post("/jobs", content=chunks, headers={"Content-Type": "application/json"})
    _assert_clear_4xx(response, 413, "body")


@pytest.mark.parametrize("key", [b"has space", b"k" * 65, b"../x", "ключ".encode()])
def test_api_refuses_a_bad_idempotency_key_header(api: httpx.Client, before_api: Counts, key: bytes) -> None:
    response = api.post(
        "/jobs",
        content=b'{"prompt": "ok"}',
        headers=[(b"Content-Type", b"application/json"), (b"Idempotency-Key", key)],
    )
    _assert_clear_4xx(response, 400, "Idempotency-Key")


def test_api_started_nothing_and_wrote_nothing_for_any_bad_input(engine: Any, before_api: Counts) -> None:
    """Runs after every API test above (same module): no execution, object or model call since."""
    assert count_executions(engine) == before_api.executions
    assert set(engine.list_keys()) == before_api.objects
    assert engine.bedrock.invocations == before_api.calls


# The deployed API's Lambda (behind API Gateway's schema check, which these do not rely on).


def _assert_lambda_4xx(answer: tuple[int, Any], status: int, field: str) -> None:
    code, body = answer
    assert code == status, body
    assert body["error"] == "InvalidRequest" and field in [d["field"] for d in body["details"]], body


@pytest.mark.parametrize("route", ROUTES)
def test_deployed_api_lambda_answers_4xx_and_starts_nothing(http_api: Any, engine: Any, route: str) -> None:
    executions, objects = count_executions(engine), set(engine.list_keys())
    json_headers = {"Content-Type": "application/json"}
    for raw, field in SCHEMA_BAD_REQUESTS:
        _assert_lambda_4xx(http_api("POST", route, body=_body(raw), headers=json_headers), 400, field)
    for case in HTTP_BAD_CASES:
        headers = {"Content-Type": case.content_type} if case.content_type else {}
        _assert_lambda_4xx(http_api("POST", route, body=case.body, headers=headers), case.status, case.field)
    assert count_executions(engine) == executions
    assert set(engine.list_keys()) == objects


def test_api_answers_400_to_deeply_nested_json(api: httpx.Client) -> None:
    _assert_clear_4xx(_post_case(api, "/images", DEEPLY_NESTED), DEEPLY_NESTED.status, DEEPLY_NESTED.field)


@pytest.mark.parametrize(
    ("raw", "field", "why"), DISGUISED_BAD_REQUESTS, ids=[w for _, _, w in DISGUISED_BAD_REQUESTS]
)
def test_request_model_refuses(raw: Any, field: str, why: str) -> None:
    with pytest.raises(ApiError) as info:
        validate_submission(raw, settings=Settings())
    assert info.value.status == 400 and field in [d.field for d in info.value.details]


# -- console and event runs -------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "field"), SCHEMA_BAD_REQUESTS, ids=_IDS)
def test_first_step_fails_with_invalid_request_naming_the_field(engine: Any, raw: Any, field: str) -> None:
    """The state machine's first state invokes this function; the error name is the exception's class."""
    status, function_error, payload = engine.router.invoke(
        "imagegen-validate-request", {"input": raw, "execution_name": "bad-input"}
    )
    error = json.loads(payload)
    assert (status, function_error, error["errorType"]) == (200, "Unhandled", "InvalidRequest")
    assert f"{field}:" in error["errorMessage"]


def _sample() -> list[tuple[Any, str]]:
    if FULL:
        return SCHEMA_BAD_REQUESTS
    spread = SCHEMA_BAD_REQUESTS[::12]
    not_objects = [(raw, field) for raw, field in SCHEMA_BAD_REQUESTS if not isinstance(raw, dict)]
    return spread + [item for item in not_objects if item not in spread]


def test_console_and_event_runs_fail_with_invalid_request_before_any_work(engine: Any) -> None:
    sample = _sample()
    objects, calls = set(engine.list_keys()), engine.bedrock.invocations
    arns = [engine.start_execution(json.dumps(raw), kind="jobs") for raw, _ in sample]
    events = [{"prompt": ""}, {"prompt": "ok", "output_folder": "../../etc"}]
    arns += [put_request_event(engine, detail) for detail in events]
    arns += [put_request_event(engine, {"prompt": "ok", "count": 0}, whole_event=True)]
    results = [engine.wait(arn, timeout=300, poll=0.1) for arn in arns]
    failures = [
        (r.status, r.error, r.message) for r in results if (r.status, r.error) != ("FAILED", "InvalidRequest")
    ]
    assert not failures
    for result, (_, field) in zip(results, sample, strict=False):
        assert f"{field}:" in result.message
    assert engine.bedrock.invocations == calls
    assert set(engine.list_keys()) == objects
    # Every run published its failure (at least once: a retried putEvents may publish it twice).
    published = [
        e["detail"] for e in engine.published_events() if e["detail-type"] == "ImageGenerationFailed"
    ]
    assert {d["execution_arn"] for d in published} >= set(arns)
    assert {d["error"] for d in published if d["execution_arn"] in arns} == {"InvalidRequest"}


# -- operations on a stored image: what only reading the image can tell (issue 16) ---------------------


def _png(size: tuple[int, int], mode: str = "RGB", color: Any = (30, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, "PNG")
    return buffer.getvalue()


def test_stored_images_are_checked_before_anything_starts(api: httpx.Client, engine: Any) -> None:
    """A source that is not the caller's answers exactly as one that does not exist (404); a source
    or mask the model cannot take is a 400 naming the field and the limit; nothing starts or is stored."""
    mine, theirs = anonymous_caller().namespace, Caller("apiKey", "someone-else").namespace
    stored = {
        f"{mine}/images/r1/ok.png": _png((160, 96)),
        f"{mine}/images/r1/tiny.png": _png((40, 40)),
        f"{mine}/images/r1/wide.png": _png((1600, 600)),
        f"{mine}/images/r1/grey-mask.png": _png((160, 96), "L", 128),
        f"{mine}/images/r1/small-mask.png": _png((80, 48), "L", 255),
        f"{theirs}/images/r9/theirs.png": _png((160, 96)),
    }
    for key, data in stored.items():
        engine.s3.put_object(Bucket=engine.config.bucket, Key=key, Body=data, ContentType="image/png")
    executions, objects, calls = count_executions(engine), set(engine.list_keys()), engine.bedrock.invocations
    ok = f"{mine}/images/r1/ok.png"
    not_found = [
        {"source_image": f"{theirs}/images/r9/theirs.png", "operation": "upscale"},
        {"source_image": f"{mine}/images/r9/theirs.png", "operation": "upscale"},  # no such image
    ]
    answers = [_post_json(api, route, raw) for raw in not_found for route in ROUTES]
    assert {a.status_code for a in answers} == {404}
    assert len({a.content for a in answers}) == 1  # another caller's key and a missing one: the same answer
    assert answers[0].json()["details"] == [{"field": "source_image", "message": NOT_FOUND}]
    style = {
        "source_image": ok,
        "operation": "style-transfer",
        "style_image": f"{theirs}/images/r9/theirs.png",
    }
    assert _post_json(api, "/jobs", style).status_code == 404
    limits = [
        (
            {"source_image": f"{mine}/images/r1/tiny.png", "operation": "remove-background"},
            "source_image",
            "40x40",
        ),
        ({"source_image": f"{mine}/images/r1/wide.png", "operation": "upscale"}, "source_image", "1536"),
        (
            {
                "source_image": ok,
                "operation": "inpaint",
                "prompt": "x",
                "mask_image": f"{mine}/images/r1/grey-mask.png",
            },
            "mask_image",
            "black and white",
        ),
        (
            {
                "source_image": ok,
                "operation": "inpaint",
                "prompt": "x",
                "mask_image": f"{mine}/images/r1/small-mask.png",
            },
            "mask_image",
            "160x96",
        ),
    ]
    for raw, field, words in limits:
        for route in ROUTES:
            response = _post_json(api, route, raw)
            _assert_clear_4xx(response, 400, field)
            assert words in response.text
    assert count_executions(engine) == executions
    assert set(engine.list_keys()) == objects
    assert engine.bedrock.invocations == calls


def test_deployed_api_lambda_checks_stored_images_as_its_caller(http_api: Any, engine: Any) -> None:
    """The API Lambda (behind API Gateway) names its caller from the request context: another caller's
    image and a missing one answer the same 404; its own image of a size the service cannot take, 400."""
    mine = Caller("apiKey", RELIABILITY_API_KEY_ID).namespace
    theirs = Caller("apiKey", "someone-else").namespace
    for key, size in ((f"{theirs}/images/r9/x.png", (160, 96)), (f"{mine}/images/r2/wide.png", (1600, 600))):
        engine.s3.put_object(Bucket=engine.config.bucket, Key=key, Body=_png(size), ContentType="image/png")
    executions, objects = count_executions(engine), set(engine.list_keys())
    headers = {"Content-Type": "application/json"}
    answers = [
        http_api("POST", route, body=_body({"source_image": key, "operation": "upscale"}), headers=headers)
        for key in (f"{theirs}/images/r9/x.png", f"{mine}/images/r9/x.png")
        for route in ROUTES
    ]
    assert {status for status, _ in answers} == {404}
    assert all(body == answers[0][1] for _, body in answers)
    assert answers[0][1]["details"] == [{"field": "source_image", "message": NOT_FOUND}]
    wide = _body({"source_image": f"{mine}/images/r2/wide.png", "operation": "upscale"})
    status, body = http_api("POST", "/jobs", body=wide, headers=headers)
    assert status == 400 and body["details"][0]["field"] == "source_image" and "1536" in body["message"]
    assert count_executions(engine) == executions
    assert set(engine.list_keys()) == objects
