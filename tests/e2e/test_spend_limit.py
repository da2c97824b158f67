"""The daily spend ceiling on the local server (``imagegen serve --daily-spend-usd N --api-key ...``):
two callers over real HTTP, one blocked when its next request's estimate would pass the ceiling (429
``SpendLimitExceeded``, what is left, when it resets, ``Retry-After``) on every route that starts work,
the other not; a failed job settles at what it cost (its images nothing), giving the room back; a
caller's own ceiling (``imagegen keys create --daily-spend-usd``'s item) wins over the server's; a
console run past the ceiling fails with the named error. The deployed API's Lambda, called with API
Gateway events of two identities (an API key, a Cognito user), answers the same. The ledger is moto's
DynamoDB, the same code as deployed (``core/spend.py``)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from image_pipeline.core import clients
from image_pipeline.core.settings import get_settings
from image_pipeline.core.spend import COMMITTED, estimate_usd, to_micro, utc_day
from image_pipeline.core.tenancy import Caller, console_caller

from imagegen.cli.api_commands import parse_daily_spend
from imagegen.cli.main import main
from imagegen.runtime.engine import EngineConfig
from imagegen.runtime.lambda_router import LambdaContext
from imagegen.runtime.local_api import create_app, put_request_event
from tests.support import count_executions, load_event, serve, with_identity

#: A ceiling that holds one 4-image job of the default model (about $0.16) and not two.
LIMIT = 0.25
FOUR = estimate_usd("stable-image-core", None, 4)


@pytest.fixture(scope="module")
def limited(offline_engine: Any) -> Iterator[tuple[str, dict[str, str]]]:
    """The session engine with a daily ceiling (as ``imagegen serve --daily-spend-usd`` configures it:
    the engine's config and the handlers' environment), and a server with two fresh callers."""
    tag = uuid.uuid4().hex[:6]
    keys = {f"alice-{tag}": f"a-secret-{tag}", f"bob-{tag}": f"b-secret-{tag}"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(offline_engine.config, "daily_spend_limit_usd", LIMIT)
        patch.setenv("DAILY_SPEND_LIMIT_USD", str(LIMIT))
        get_settings.cache_clear()
        with serve(create_app(offline_engine, api_keys=keys)) as url:
            yield url, keys
    get_settings.cache_clear()


def _client(url: str, secret: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=120, headers={"x-api-key": secret})


def _wait(api: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        job = api.get(f"/jobs/{job_id}").json()
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            return dict(job)
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def _assert_spend_refused(answer: httpx.Response, *, openai: bool = False) -> None:
    assert answer.status_code == 429, answer.text
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    message = answer.json()["error"]["message"] if openai else answer.json()["message"]
    if not openai:
        assert answer.json()["error"] == "SpendLimitExceeded"
    assert "left" in message and f"resets at {tomorrow}T00:00:00Z" in message
    seconds = int(answer.headers["Retry-After"])
    assert 0 < seconds <= 24 * 3600


def test_one_caller_is_blocked_at_its_ceiling_and_the_other_is_not(
    limited: tuple[str, dict[str, str]], engine: Any
) -> None:
    url, keys = limited
    alice_name, bob_name = list(keys)
    ledger = engine.spend_ledger
    alice_ns = Caller("apiKey", alice_name).namespace
    with _client(url, keys[alice_name]) as alice, _client(url, keys[bob_name]) as bob:
        first = alice.post("/jobs", json={"prompt": "a lighthouse", "count": 4, "seed": 1, "cache": False})
        assert first.status_code == 202, first.text
        day = utc_day(datetime.now(UTC))
        assert ledger.read_day(alice_ns, day)[COMMITTED] >= to_micro(FOUR)

        before = count_executions(engine)
        _assert_spend_refused(alice.post("/jobs", json={"prompt": "another", "count": 4}))
        _assert_spend_refused(alice.post("/images", json={"prompt": "another", "count": 4}))
        _assert_spend_refused(alice.get("/images", params={"prompt": "another", "count": "4"}))
        openai = alice.post(
            "/v1/images/generations",
            json={"prompt": "another", "n": 4},
            headers={"Authorization": f"Bearer {keys[alice_name]}"},
        )
        _assert_spend_refused(openai, openai=True)
        assert count_executions(engine) == before  # nothing started

        # bob spends from his own ceiling
        theirs = bob.post("/jobs", json={"prompt": "bob's harbour", "count": 4})
        assert theirs.status_code == 202, theirs.text
        assert _wait(bob, theirs.json()["job_id"])["status"] == "succeeded"

        # alice's job settles at its manifest's cost
        done = _wait(alice, first.json()["job_id"])
        assert done["status"] == "succeeded"
        cost = done["manifest"]["cost"]["total_usd"]
        assert ledger.read_day(alice_ns, day)[COMMITTED] == to_micro(cost)
        assert not any(name.startswith("hold:") for name in ledger.read_day(alice_ns, day))


def test_a_failed_job_is_settled_at_its_cost_and_a_retry_is_refused_past_the_ceiling(
    limited: tuple[str, dict[str, str]], engine: Any
) -> None:
    url, keys = limited
    bob_name = list(keys)[1]
    bob_ns = Caller("apiKey", bob_name).namespace
    day = utc_day(datetime.now(UTC))
    ledger = engine.spend_ledger
    with _client(url, keys[bob_name]) as bob:
        spent = ledger.read_day(bob_ns, day).get(COMMITTED, 0)
        failed = bob.post("/jobs", json={"prompt": "[[fault:denied]] bob", "count": 2})
        assert failed.status_code == 202, failed.text
        job = _wait(bob, failed.json()["job_id"])
        assert job["status"] == "failed"
        # its images cost nothing: only the workflow's estimate is counted
        after = ledger.read_day(bob_ns, day)
        assert not any(name.startswith("hold:") for name in after)
        assert 0 < after[COMMITTED] - spent < to_micro(0.001)

        # bob's own ceiling (the keys command's item) is below what is spent: a retry is refused
        ledger.set_limit(bob_ns, 0.01)
        try:
            retry = bob.post(f"/jobs/{failed.json()['job_id']}/retry")
            _assert_spend_refused(retry)
        finally:
            ledger.forget_limit(bob_ns)
        retried = bob.post(f"/jobs/{failed.json()['job_id']}/retry")
        assert retried.status_code == 202, retried.text


def test_a_console_run_past_the_ceiling_fails_with_the_named_error(
    limited: tuple[str, dict[str, str]], engine: Any
) -> None:
    arn = engine.start_execution({"prompt": "an operator's big run", "count": 40})
    ended = engine.wait(arn, timeout=120)
    assert ended.status == "FAILED" and ended.error == "SpendLimitExceeded", ended
    assert "resets at" in ended.message and "left" in ended.message
    # nothing is held for it: the refusal changed nothing on the console's day
    day = utc_day(datetime.now(UTC))
    assert f"hold:{ended.name}" not in engine.spend_ledger.read_day(console_caller().namespace, day)
    assert clients.spend_ledger() is not None  # the handlers' own ledger is the one configured


def test_an_event_past_the_ceiling_fails_with_the_named_error(
    limited: tuple[str, dict[str, str]], engine: Any
) -> None:
    """An ``ImageGenerationRequested`` event's job is its account's (``events:<account>``): its first step
    reserves, and past the ceiling the execution fails with ``SpendLimitExceeded``."""
    ended = engine.wait(put_request_event(engine, {"prompt": "an event's big run", "count": 40}), timeout=120)
    assert ended.status == "FAILED" and ended.error == "SpendLimitExceeded", ended
    assert "resets at" in ended.message


def test_serve_reads_every_callers_and_each_keys_ceiling() -> None:
    keys = {"alice": "s1", "bob": "s2"}
    assert parse_daily_spend(["5", "alice=2.5"], keys) == (5.0, {"alice": 2.5})
    assert parse_daily_spend([], keys) == (None, {})
    for bad, words in (
        (["0"], "positive number"),
        (["nan"], "positive number"),
        (["alice=-1"], "positive number"),
        (["carol=1"], "'carol' is not a --api-key NAME"),
        (["1", "2"], "given twice"),
        (["bob=1", "bob=2"], "two ceilings"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_daily_spend(bad, keys)


def test_serve_refuses_a_ceiling_that_is_not_a_positive_number() -> None:
    for bad in ("0", "-1", "nan", "inf", "nobody=1"):
        assert main(["serve", "--daily-spend-usd", bad, "--port", "0"]) != 0
    environment = EngineConfig(daily_spend_limit_usd=2.5).handler_settings().to_environment()
    assert environment["DAILY_SPEND_LIMIT_USD"] == "2.5"
    assert "DAILY_SPEND_LIMIT_USD" not in EngineConfig().handler_settings().to_environment()


# -- the deployed API's Lambda, with API Gateway events of two identities ------------------------------


def _lambda_call(
    module: Any, name: str, identity: dict[str, str], body: dict[str, Any] | None
) -> dict[str, Any]:
    event = with_identity(load_event(name), **identity)
    if body is not None:
        event["body"] = json.dumps(body)
    if event.get("queryStringParameters"):  # GET /images: the request in the query, four images
        event["queryStringParameters"]["count"] = "4"
        event["multiValueQueryStringParameters"]["count"] = ["4"]
    event["requestContext"]["requestId"] = str(uuid.uuid4())
    for header in ("Idempotency-Key", "Prefer"):
        event["headers"].pop(header, None)
        event["multiValueHeaders"].pop(header, None)
    response: dict[str, Any] = module.handler(event, LambdaContext(function_name="imagegen-http-api"))
    return response


def test_the_deployed_lambda_answers_429_with_retry_after_on_every_starting_route(
    limited: tuple[str, dict[str, str]], engine: Any
) -> None:
    from image_pipeline.handlers import http_api as module

    tag = uuid.uuid4().hex[:8]
    alice = {"api_key_id": f"alicekey-{tag}"}
    bob = {"cognito_sub": f"0f1e2d3c-{tag}"}  # a signed-in user is a caller like a key
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JOBS_STATE_MACHINE_ARN", engine.state_machines["jobs"])
        module.environment.cache_clear()
        try:
            first = _lambda_call(module, "apigw_post_jobs", alice, {"prompt": "a lighthouse", "count": 4})
            assert first["statusCode"] == 202, first["body"]
            before = count_executions(engine)
            for name, body in (
                ("apigw_post_jobs", {"prompt": "another", "count": 4}),
                ("apigw_post_images", {"prompt": "another", "count": 4}),
                ("apigw_get_images", None),  # the request in its query (count 4, below)
                ("apigw_openai_images_generations", {"prompt": "another", "n": 4}),
            ):
                refused = _lambda_call(module, name, alice, body)
                assert refused["statusCode"] == 429, (name, refused["body"])
                headers = {k.lower(): v[-1] for k, v in refused["multiValueHeaders"].items()}
                assert 0 < int(headers["retry-after"]) <= 24 * 3600, name
                text = json.loads(refused["body"])
                message = text["error"]["message"] if "openai" in name else text["message"]
                assert "left" in message and "resets at" in message, name
            assert count_executions(engine) == before
            theirs = _lambda_call(module, "apigw_post_jobs", bob, {"prompt": "bob's harbour", "count": 4})
            assert theirs["statusCode"] == 202, theirs["body"]
        finally:
            module.environment.cache_clear()


def test_the_deployed_lambdas_retry_is_refused_past_the_callers_own_ceiling(
    limited: tuple[str, dict[str, str]], engine: Any
) -> None:
    from image_pipeline.handlers import http_api as module

    who = {"api_key_id": f"retrykey-{uuid.uuid4().hex[:8]}"}
    namespace = Caller("apiKey", who["api_key_id"]).namespace
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JOBS_STATE_MACHINE_ARN", engine.state_machines["jobs"])
        module.environment.cache_clear()
        try:
            failed = _lambda_call(
                module, "apigw_post_jobs", who, {"prompt": "[[fault:denied]] x", "count": 2}
            )
            assert failed["statusCode"] == 202, failed["body"]
            job_id = json.loads(failed["body"])["job_id"]
            deadline = time.monotonic() + 120
            while True:
                event = with_identity(load_event("apigw_get_job"), **who)
                event.update(path=f"/jobs/{job_id}", pathParameters={"id": job_id})
                job = json.loads(module.handler(event, LambdaContext(function_name="f"))["body"])
                if job["status"] not in {"running", "queued"}:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert job["status"] == "failed"
            engine.spend_ledger.set_limit(namespace, 0.000001)  # the key's own ceiling, all but spent
            retry = with_identity(load_event("apigw_get_job"), **who)
            retry.update(
                httpMethod="POST",
                path=f"/jobs/{job_id}/retry",
                resource="/jobs/{id}/retry",
                pathParameters={"id": job_id},
                body=None,
            )
            retry["requestContext"].update(httpMethod="POST", resourcePath="/jobs/{id}/retry")
            before = count_executions(engine)
            refused = module.handler(retry, LambdaContext(function_name="f"))
            assert refused["statusCode"] == 429, refused["body"]
            assert json.loads(refused["body"])["error"] == "SpendLimitExceeded"
            headers = {k.lower(): v[-1] for k, v in refused["multiValueHeaders"].items()}
            assert 0 < int(headers["retry-after"]) <= 24 * 3600
            assert count_executions(engine) == before
        finally:
            engine.spend_ledger.forget_limit(namespace)
            module.environment.cache_clear()
