"""Tenancy (issue 19): each caller sees and spends only its own.

Two callers, alice and bob, try every route on each other's jobs, idempotency keys, images and links;
a third, carol, who has nothing, gives the answer for "does not exist". The suite runs

* against the local server started as ``imagegen serve --api-key alice=... --api-key bob=...
  --api-key carol=...`` (real HTTP), and
* against the deployed API's Lambda (``image_pipeline.handlers.http_api``) with the canonical API
  Gateway events (``tests/events/apigw_*.json``) given other identities (:func:`tests.support.with_identity`:
  an API key's id, an IAM principal, a Cognito user), over the same offline engine,
* plus executions started from the console (a bare request) and by events (the rule's envelope).

A cross-caller attempt passes when it is answered exactly as for a thing that does not exist (the same
status and body as carol's, or absent from a list) and nothing of the other caller's changed: no
execution started, no object written under its namespace, its job's status as it was. The attempts
are the parameters below; :data:`ATTEMPTS` counts them per route, and docs/reliability.md shows the same
figures (:func:`test_the_documented_figures_are_the_suites`).
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from image_pipeline.core.execution_input import ExecutionInput
from image_pipeline.core.keys import namespace_prefix
from image_pipeline.core.tenancy import Caller, console_caller, events_caller, execution_name

from imagegen.runtime.engine import ACCOUNT
from imagegen.runtime.lambda_router import LambdaContext
from imagegen.runtime.local_api import create_app, put_request_event
from tests.support import count_executions, load_event, serve, with_identity

ROOT = Path(__file__).resolve().parents[2]
DOCS, WEB_DIR = ROOT / "docs" / "reliability.md", ROOT / "web"
KEYS = {"alice": "alice-secret-0001", "bob": "bob-secret-00002", "carol": "carol-secret-0003"}
#: A request small and quick enough for the stand-in (one image of the default model).
ONE = {"count": 1, "seed": 7}

# -- the attempts, by target and route: what docs/reliability.md counts --------------------------------

JOB_LOOKUPS = [
    "alice's job by its idempotency key",
    "alice's job by its UUID",
    "alice's synchronous request by its id",
    "alice's execution name, namespace included",
    "a console run named with bob's namespace",
    "an event's job by its execution name",
]
LAMBDA_IDENTITIES = ["bob's API key id", "an IAM principal", "a Cognito user", "bob's id, alice's key header"]
CANCELS = ["alice's running job", "alice's finished job", "alice's execution name"]
RETRIES = ["alice's failed job", "alice's succeeded job"]
LISTS = ["all of bob's", "status=succeeded", "status=failed", "with alice's next_token"]
STREAMS = ["alice's job's events", "alice's job's events after her first"]
KEY_REUSES = ["alice's key, another request", "alice's key, the same request"]
SYNC_FOLDERS = ["output_folder naming alice's namespace", "alice's folder, prefix and seed"]
QUERY_FOLDERS = ["output_folder naming alice's namespace"]
FILES = [
    "alice's image, bob's key",
    "alice's manifest.json, bob's key",
    "alice's link, another of her keys",
    "bob's link, alice's image",
    "alice's link, expiry moved",
]
IDENTITY_CLAIMS = [
    "caller in a POST /jobs body",
    "caller in a POST /images body",
    "an envelope as a POST /jobs body",
    "caller in GET /images' query",
]
OPENAI = ["a body whose user names alice", "alice's key sent beside bob's"]
SEARCHES = ["alice's prompt words", "alice's model and time range", "alice's next_token"]
LINKS = [
    "bob's link rewritten to alice's image",
    "bob's link claiming alice's namespace",
    "alice's link with bob's signature",
]
CONSOLE_AND_EVENTS = [
    "GET a console run named with alice's namespace",
    "DELETE it",
    "retry it",
    "GET an event's job",
    "an event whose detail names a caller",
    "an event whose detail is an envelope",
]
#: (target, route) -> the attempts tried there.
ATTEMPTS: dict[tuple[str, str], list[str]] = {
    ("local server", "`GET /jobs/{id}`"): JOB_LOOKUPS,
    ("local server", "`DELETE /jobs/{id}`"): CANCELS,
    ("local server", "`POST /jobs/{id}/retry`"): RETRIES,
    ("local server", "`GET /jobs`"): LISTS,
    ("local server", "`GET /jobs/{id}/events`"): STREAMS,
    ("local server", "`POST /jobs` with another's `Idempotency-Key`"): KEY_REUSES,
    ("local server", "`POST /images`"): SYNC_FOLDERS,
    ("local server", "`GET /images`"): QUERY_FOLDERS,
    ("local server", "`GET /files/{key}`"): FILES,
    ("local server", "an identity sent in a body or a query"): IDENTITY_CLAIMS,
    ("local server", "`POST /v1/images/generations`"): OPENAI,
    ("local server", "`GET /images/search`"): SEARCHES,
    ("local server", "`GET /links/{token}`"): LINKS,
    ("Lambda", "`GET /jobs/{id}`"): JOB_LOOKUPS + LAMBDA_IDENTITIES,
    ("Lambda", "`DELETE /jobs/{id}`"): CANCELS,
    ("Lambda", "`POST /jobs/{id}/retry`"): RETRIES,
    ("Lambda", "`GET /jobs`"): LISTS,
    ("Lambda", "`GET /jobs/{id}/events`"): STREAMS,
    ("Lambda", "`POST /jobs` with another's `Idempotency-Key`"): KEY_REUSES,
    ("Lambda", "`POST /images`"): SYNC_FOLDERS,
    ("Lambda", "`GET /images`"): QUERY_FOLDERS,
    ("Lambda", "an identity sent in a body or a query"): IDENTITY_CLAIMS,
    ("Lambda", "`POST /v1/images/generations`"): OPENAI,
    ("Lambda", "`GET /images/search`"): SEARCHES,
    ("console and events", "console runs (GET, DELETE, retry); event jobs and details"): CONSOLE_AND_EVENTS,
}
#: Routes each target answers 401 without a known caller (the local server: no or a wrong x-api-key).
LOCAL_ROUTES = [
    ("POST", "/images"),
    ("GET", "/images?prompt=x"),
    ("POST", "/jobs"),
    ("GET", "/jobs"),
    ("GET", "/jobs/any-id"),
    ("DELETE", "/jobs/any-id"),
    ("POST", "/jobs/any-id/retry"),
    ("GET", "/models"),
    ("GET", "/files/any/key.png"),
]


# -- two ways to call the API as someone ----------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class Api:
    """One caller of one target: ``call(method, path, body=..., headers=...)`` -> :class:`Answer`."""

    caller: Caller

    def call(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        raise NotImplementedError

    def get(self, path: str, **kwargs: Any) -> Answer:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Answer:
        return self.call("POST", path, body=body, **kwargs)


class LocalCaller(Api):
    """A caller of the local server: its ``x-api-key`` (None: no key)."""

    def __init__(self, url: str, name: str | None, key: str | None = None) -> None:
        self.url, self.name = url, name
        self.key = key if key is not None else KEYS.get(name or "")
        self.caller = Caller("apiKey", name or "?")

    def call(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        sent = {"x-api-key": self.key} if self.key else {}
        sent.update(headers or {})
        content = None
        if body is not None:
            content, sent["Content-Type"] = json.dumps(body), "application/json"
        response = httpx.request(method, self.url + path, content=content, headers=sent, timeout=120)
        answered = (
            response.json()
            if response.headers.get("content-type", "").startswith("application/json")
            else None
        )
        return Answer(response.status_code, answered, dict(response.headers))


#: Canonical event of each route of the deployed API (J's routes reuse GET /jobs/{id}'s).
_EVENT_OF = {
    ("POST", "/images"): "apigw_post_images",
    ("GET", "/images"): "apigw_get_images",
    ("POST", "/jobs"): "apigw_post_jobs",
    ("GET", "/models"): "apigw_get_models",
    ("POST", "/v1/images/generations"): "apigw_openai_images_generations",
}


class LambdaCaller(Api):
    """A caller of the deployed API's Lambda: the identity API Gateway puts in the request context."""

    def __init__(self, module: Any, caller: Caller, identity: dict[str, str | None]) -> None:
        self.module, self.caller, self.identity = module, caller, identity

    def call(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        route, _, query = path.partition("?")
        name = _EVENT_OF.get((method, route), "apigw_get_job")
        event = with_identity(load_event(name), **self.identity)
        event.update(httpMethod=method, path=route, body=None if body is None else json.dumps(body))
        parts = route.strip("/").split("/")
        resource = "/" + "/".join("{id}" if i == 1 else p for i, p in enumerate(parts))
        event["resource"] = event["requestContext"]["resourcePath"] = resource
        event["requestContext"].update(httpMethod=method, path=f"/v1{route}", requestId=str(uuid.uuid4()))
        event["pathParameters"] = {"id": parts[1]} if len(parts) > 1 else None
        pairs = [(k, v) for k, values in parse_qs(query, keep_blank_values=True).items() for v in values]
        event["queryStringParameters"] = dict(pairs) or None
        event["multiValueQueryStringParameters"] = {
            k: [v for n, v in pairs if n == k] for k, _ in pairs
        } or None
        for header, value in {"Content-Type": "application/json", **(headers or {})}.items():
            event["headers"][header] = value
            event["multiValueHeaders"][header] = [value]
        if "Idempotency-Key" not in (headers or {}):
            event["headers"].pop("Idempotency-Key", None)
            event["multiValueHeaders"].pop("Idempotency-Key", None)
        response = self.module.handler(event, LambdaContext(function_name="imagegen-http-api"))
        flat = {k.lower(): v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}
        is_json = flat.get("content-type", "").startswith("application/json") and response.get("body")
        answered = json.loads(response["body"]) if is_json else response.get("body")
        return Answer(response["statusCode"], answered, flat)


# -- the world: alice's jobs, images and links, on each target ----------------------------------------


@dataclass
class World:
    """What alice has on one target, and the callers who try to reach it."""

    target: str
    engine: Any
    alice: Api
    bob: Api
    carol: Api
    keyed: str = ""  # a finished job started with an Idempotency-Key
    keyed_request: dict[str, Any] = field(default_factory=dict)
    uuid_job: str = ""  # a finished job without a key
    failed_job: str = ""  # a failed job with a stored manifest (retriable)
    sync_id: str = ""  # the request id of a POST /images
    manifest: dict[str, Any] = field(default_factory=dict)  # the keyed job's manifest
    console_job: str = ""  # a console run named with bob's namespace: "<bob's>-<this>"
    event_job: str = ""  # the execution name of an event's job
    extra: dict[str, Any] = field(default_factory=dict)

    def alice_keys(self) -> set[str]:
        return set(self.engine.list_keys(namespace_prefix(self.alice.caller.namespace)))

    def snapshot(self) -> tuple[frozenset[str], dict[str, str]]:
        """alice's objects, and the status of each of alice's jobs."""
        statuses = {job: self.alice.get(f"/jobs/{job}").body["status"] for job in self.alice_jobs()}
        return frozenset(self.alice_keys()), statuses

    def alice_jobs(self) -> tuple[str, ...]:
        return (self.keyed, self.uuid_job, self.failed_job, self.sync_id)


def _wait(api: Api, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = api.get(f"/jobs/{job_id}")
        assert answer.status == 200, answer.body
        if answer.body["status"] in {"succeeded", "failed", "cancelled"}:
            return dict(answer.body)
        assert time.monotonic() < deadline, f"{job_id} still {answer.body['status']}"
        time.sleep(0.1)


def _populate(world: World, tag: str) -> World:
    """alice's jobs (keyed, UUID, failed), a synchronous request, a console run named with bob's
    namespace and an event's job."""
    alice = world.alice
    world.keyed = f"order-{tag}"
    world.keyed_request = {"prompt": f"alice's lighthouse {tag}", **ONE, "count": 2}
    started = alice.post("/jobs", world.keyed_request, headers={"Idempotency-Key": world.keyed})
    assert started.status == 202, started.body
    world.uuid_job = alice.post("/jobs", {"prompt": f"alice's second {tag}", **ONE}).body["job_id"]
    world.failed_job = alice.post("/jobs", {"prompt": f"[[fault:denied]] alice {tag}", **ONE}).body["job_id"]
    sync = alice.post("/images", {"prompt": f"alice now {tag}", **ONE})
    assert sync.status == 200, sync.body
    world.sync_id = sync.body["request_id"]
    world.manifest = _wait(alice, world.keyed)["manifest"]
    assert _wait(alice, world.uuid_job)["status"] == "succeeded"
    assert _wait(alice, world.failed_job)["status"] == "failed"
    engine = world.engine
    world.console_job = f"console-{tag}"
    name = execution_name(world.bob.caller, world.console_job)
    engine.wait(engine.start_execution({"prompt": f"an operator's run {tag}", **ONE}, name=name), timeout=120)
    arn = put_request_event(engine, {"prompt": f"an event {tag}", **ONE})
    world.event_job = engine.wait(arn, timeout=120).name
    return world


@pytest.fixture(scope="module")
def local_world(offline_engine: Any) -> Iterator[World]:
    """The local server with three keys, and alice's things on it."""
    app = create_app(offline_engine, web_dir=WEB_DIR, api_keys=dict(KEYS))
    with serve(app) as url:
        world = World("local", offline_engine, *(LocalCaller(url, n) for n in ("alice", "bob", "carol")))
        world.extra["url"] = url
        yield _populate(world, uuid.uuid4().hex[:8])


def _lambda_identity(kind: str, ident: str) -> dict[str, str | None]:
    return {"apiKey": {"api_key_id": ident}, "iam": {"user_arn": ident}, "cognito": {"cognito_sub": ident}}[
        kind
    ]


@pytest.fixture(scope="module")
def lambda_world(offline_engine: Any) -> Iterator[World]:
    """The deployed API's Lambda over the session engine's jobs workflow, and alice's things on it."""
    from image_pipeline.handlers import http_api as module

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JOBS_STATE_MACHINE_ARN", offline_engine.state_machines["jobs"])
        module.environment.cache_clear()

        def as_(kind: str, ident: str) -> LambdaCaller:
            return LambdaCaller(module, Caller(kind, ident), _lambda_identity(kind, ident))  # type: ignore[arg-type]

        world = World(
            "lambda",
            offline_engine,
            as_("apiKey", "alicekey01"),
            as_("apiKey", "bobkey0002"),
            as_("apiKey", "carolkey03"),
        )
        world.extra["identities"] = {
            "bob's API key id": world.bob,
            "an IAM principal": as_("iam", f"arn:aws:iam::{ACCOUNT}:user/mallory"),
            "a Cognito user": as_("cognito", "0f1e2d3c-aaaa-bbbb-cccc-444455556666"),
            # alice's key in the header, bob's id in the context: API Gateway's word wins
            "bob's id, alice's key header": world.bob,
        }
        yield _populate(world, uuid.uuid4().hex[:8])
        module.environment.cache_clear()


@pytest.fixture(params=["local", "lambda"])
def world(request: pytest.FixtureRequest) -> World:
    return request.getfixturevalue(f"{request.param}_world")  # type: ignore[no-any-return]


def assert_not_found_like_missing(
    world: World, method: str, path: str, answer: Answer, **kwargs: Any
) -> None:
    """``answer`` is what carol, who has nothing, gets for the same call: 404, the same body."""
    missing = world.carol.call(method, path, **kwargs)
    assert missing.status == 404, missing.body
    assert (answer.status, answer.body) == (missing.status, missing.body)


@contextmanager
def nothing_of_alices_changes(world: World) -> Iterator[None]:
    """alice's objects and the status of each of her jobs are the same after the block."""
    before = world.snapshot()
    yield
    assert world.snapshot() == before


# -- GET /jobs/{id} ----------------------------------------------------------------------------------


def _lookup_id(world: World, attempt: str) -> str:
    return {
        JOB_LOOKUPS[0]: world.keyed,
        JOB_LOOKUPS[1]: world.uuid_job,
        JOB_LOOKUPS[2]: world.sync_id,
        JOB_LOOKUPS[3]: execution_name(world.alice.caller, world.keyed),
        JOB_LOOKUPS[4]: world.console_job,
        JOB_LOOKUPS[5]: world.event_job,
    }[attempt]


@pytest.mark.parametrize("attempt", JOB_LOOKUPS)
def test_get_job_of_another_is_404_like_a_missing_one(world: World, attempt: str) -> None:
    """The console's and the event's runs are nobody's job: bob tries them as his own ids."""
    job_id = _lookup_id(world, attempt)
    if attempt in JOB_LOOKUPS[:3]:
        assert world.alice.get(f"/jobs/{job_id}").status == 200
    executions = count_executions(world.engine)
    with nothing_of_alices_changes(world):
        answer = world.bob.get(f"/jobs/{job_id}")
        assert_not_found_like_missing(world, "GET", f"/jobs/{job_id}", answer)
    assert count_executions(world.engine) == executions


@pytest.mark.parametrize("attempt", LAMBDA_IDENTITIES)
def test_get_job_as_other_identities_of_the_deployed_api_is_404(lambda_world: World, attempt: str) -> None:
    other: LambdaCaller = lambda_world.extra["identities"][attempt]
    headers = {"X-Api-Key": "alice's key value"} if "alice's key header" in attempt else None
    answer = other.get(f"/jobs/{lambda_world.keyed}", headers=headers)
    assert_not_found_like_missing(lambda_world, "GET", f"/jobs/{lambda_world.keyed}", answer)
    assert lambda_world.alice.get(f"/jobs/{lambda_world.keyed}").status == 200


# -- DELETE /jobs/{id}, POST /jobs/{id}/retry --------------------------------------------------------


@pytest.mark.parametrize("attempt", CANCELS)
def test_cancel_of_another_is_404_and_cancels_nothing(world: World, attempt: str) -> None:
    alice = world.alice
    if attempt == CANCELS[0]:
        running = alice.post("/jobs", {"prompt": "[[fault:latency=1.5]] alice, slowly", **ONE}).body["job_id"]
        job_id = running
    else:
        running = None
        job_id = world.keyed if attempt == CANCELS[1] else execution_name(alice.caller, world.keyed)
    answer = world.bob.call("DELETE", f"/jobs/{job_id}")
    assert_not_found_like_missing(world, "DELETE", f"/jobs/{job_id}", answer)
    if running:
        assert alice.get(f"/jobs/{running}").body["status"] in {"queued", "running", "succeeded"}
        job = _wait(alice, running)
        assert job["status"] == "succeeded" and not job["manifest"].get("cancelled")
    else:
        assert alice.get(f"/jobs/{world.keyed}").body["status"] == "succeeded"


@pytest.mark.parametrize("attempt", RETRIES)
def test_retry_of_another_is_404_and_starts_nothing(world: World, attempt: str) -> None:
    """404 where alice would get 202 (her failed job) or 409 (nothing to retry): nothing told."""
    job_id = world.failed_job if attempt == RETRIES[0] else world.keyed
    executions = count_executions(world.engine)
    with nothing_of_alices_changes(world):
        answer = world.bob.post(f"/jobs/{job_id}/retry")
        assert_not_found_like_missing(world, "POST", f"/jobs/{job_id}/retry", answer)
    assert count_executions(world.engine) == executions


# -- GET /jobs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", LISTS)
def test_the_list_shows_only_ones_own(world: World, attempt: str) -> None:
    alice_jobs = {world.keyed, world.uuid_job, world.failed_job, world.sync_id}
    query = {LISTS[0]: "", LISTS[1]: "?status=succeeded", LISTS[2]: "?status=failed"}.get(attempt)
    if query is None:  # alice's own next_token, presented by bob
        token = world.alice.get("/jobs?limit=1").body["next_token"]
        assert token, "alice has more than one job: her first page has a next_token"
        query = f"?limit=1&next_token={token}"
    answer = world.bob.get(f"/jobs{query}")
    assert answer.status in {200, 400}, answer.body
    listed = {job["job_id"] for job in answer.body.get("jobs", [])}
    assert not listed & alice_jobs
    assert alice_jobs <= {job["job_id"] for job in world.alice.get("/jobs?limit=100").body["jobs"]}


# -- GET /jobs/{id}/events -------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", STREAMS)
def test_the_events_of_anothers_job_are_404_like_a_missing_one(world: World, attempt: str) -> None:
    """Not a stream of someone else's images: the same 404 as for a job that does not exist, before
    any event is sent (``Last-Event-ID`` or not)."""
    headers = {"Last-Event-ID": "1"} if attempt == STREAMS[1] else None
    assert world.alice.get(f"/jobs/{world.keyed}/events", headers=headers).status in {200, 204}
    with nothing_of_alices_changes(world):
        answer = world.bob.get(f"/jobs/{world.keyed}/events", headers=headers)
        assert_not_found_like_missing(world, "GET", f"/jobs/{world.keyed}/events", answer, headers=headers)


# -- POST /jobs with another's idempotency key -------------------------------------------------------


@pytest.mark.parametrize("attempt", KEY_REUSES)
def test_two_callers_may_use_one_idempotency_key_without_meeting(world: World, attempt: str) -> None:
    request = world.keyed_request if attempt == KEY_REUSES[1] else {"prompt": "bob's own", **ONE}
    key = f"{world.keyed}-{KEY_REUSES.index(attempt)}"  # alice's key, as alice used it, for each attempt
    assert world.alice.post("/jobs", world.keyed_request, headers={"Idempotency-Key": key}).status == 202
    executions = count_executions(world.engine)
    answer = world.bob.post("/jobs", request, headers={"Idempotency-Key": key})
    # bob's own new job: 202 "running" (not 409, not alice's "succeeded"): one more execution
    assert answer.status == 202 and answer.body["job_id"] == key and answer.body["status"] == "running"
    assert count_executions(world.engine) == executions + 1
    bob_job, alice_job = _wait(world.bob, key), _wait(world.alice, key)
    assert bob_job["manifest"]["caller_namespace"] == world.bob.caller.namespace
    assert alice_job["manifest"]["caller_namespace"] == world.alice.caller.namespace
    assert bob_job["manifest"]["prompt"] == request["prompt"]
    assert alice_job["manifest"]["prompt"] == world.keyed_request["prompt"]
    # within one caller the key still means one request: alice's other request is 409
    conflict = world.alice.post("/jobs", {"prompt": "alice's other"}, headers={"Idempotency-Key": key})
    assert conflict.status == 409 and conflict.body["error"] == "IdempotencyKeyReused"


# -- POST /images, GET /images: where the images go ----------------------------------------------------


def _sync_request(world: World, attempt: str) -> dict[str, Any]:
    alice_ns = world.alice.caller.namespace
    if attempt == SYNC_FOLDERS[0]:
        return {"prompt": "bob's trespass", **ONE, "output_folder": f"{alice_ns}/images"}
    image = world.manifest["images"][0]
    folder = world.manifest["parameters"]["output_folder"]
    prefix = world.manifest["parameters"]["file_name_prefix"]
    return {
        "prompt": "bob's twin",
        "count": 1,
        "seed": image["seed"],
        "output_folder": folder,
        "file_name_prefix": prefix,
    }


@pytest.mark.parametrize("attempt", SYNC_FOLDERS)
def test_images_go_under_the_callers_namespace_whatever_the_folder(world: World, attempt: str) -> None:
    with nothing_of_alices_changes(world):
        answer = world.bob.post("/images", _sync_request(world, attempt))
    assert answer.status == 200, answer.body
    bob_ns = namespace_prefix(world.bob.caller.namespace)
    assert (
        answer.body["prefix"].startswith(bob_ns)
        and answer.body["caller_namespace"] == world.bob.caller.namespace
    )
    assert all(i["key"].startswith(bob_ns) for i in answer.body["images"] if i["key"])


@pytest.mark.parametrize("attempt", QUERY_FOLDERS)
def test_get_images_goes_under_the_callers_namespace(world: World, attempt: str) -> None:
    folder = f"{world.alice.caller.namespace}/images"
    with nothing_of_alices_changes(world):
        answer = world.bob.get(f"/images?prompt=bob+by+query&count=1&output_folder={folder}")
    assert answer.status == 200, answer.body
    assert answer.body["prefix"].startswith(namespace_prefix(world.bob.caller.namespace))


# -- GET /files/{key}: the local server's stand-in for presigned links ---------------------------------


def _swap_path(url: str, key: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/files/{key}?{parts.query}"


@pytest.mark.parametrize("attempt", FILES)
def test_links_and_files_reach_only_ones_own(local_world: World, attempt: str) -> None:
    """A link is like a presigned URL: it reads one key, until it expires, whoever holds it; without
    one, a caller reads only its own keys (another's is 404 like a missing one)."""
    world = local_world
    images = [i for i in world.manifest["images"] if i["key"]]
    first, second = images[0], images[1]
    manifest_key = world.manifest["manifest_key"]
    assert httpx.get(first["url"]).status_code == 200  # alice's own link works, with no key at all
    if attempt in FILES[:2]:
        key = first["key"] if attempt == FILES[0] else manifest_key
        answer = world.bob.get(f"/files/{key}")
        assert_not_found_like_missing(world, "GET", f"/files/{key}", answer)
        return
    if attempt == FILES[2]:
        forged = _swap_path(first["url"], second["key"])
    elif attempt == FILES[3]:
        bob_image = world.bob.post("/images", {"prompt": "bob's own image", **ONE}).body["images"][0]
        forged = _swap_path(bob_image["url"], first["key"])
    else:
        query = parse_qs(urlsplit(first["url"]).query)
        later = int(query["expires"][0]) + 3600
        forged = first["url"].replace(f"expires={query['expires'][0]}", f"expires={later}")
    response = httpx.get(forged, headers={"x-api-key": KEYS["bob"]})
    assert response.status_code == 403 and response.json()["error"] == "AccessDenied"


# -- identity sent by the client -------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", IDENTITY_CLAIMS)
def test_an_identity_in_the_request_is_an_unknown_field(world: World, attempt: str) -> None:
    claim = {"kind": "apiKey", "id": "alice"}
    executions = count_executions(world.engine)
    if attempt == IDENTITY_CLAIMS[0]:
        answer, field_name = world.bob.post("/jobs", {"prompt": "x", "caller": claim}), "caller"
    elif attempt == IDENTITY_CLAIMS[1]:
        answer, field_name = world.bob.post("/images", {"prompt": "x", "caller": claim}), "caller"
    elif attempt == IDENTITY_CLAIMS[2]:
        answer, field_name = world.bob.post("/jobs", {"request": {"prompt": "x"}, "caller": claim}), "caller"
    else:
        answer, field_name = world.bob.get("/images?prompt=x&caller=alice"), "caller"
    assert answer.status == 400 and answer.body["error"] == "InvalidRequest", answer.body
    assert field_name in {d["field"] for d in answer.body["details"]}
    assert count_executions(world.engine) == executions


# -- the OpenAI-compatible route -------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", OPENAI)
def test_an_openai_generation_is_the_authenticated_callers(world: World, attempt: str) -> None:
    """OpenAI's ``user`` is an end-user id for abuse tracing, never the caller; a key of alice's sent
    beside bob's (local: ``x-api-key`` beside the Bearer key; deployed: alice's key in the header, bob's
    id in the context API Gateway wrote) changes nothing: the job is bob's, 404 for alice."""
    body = {"prompt": f"bob's OpenAI image {uuid.uuid4().hex[:6]}", "n": 1}
    with nothing_of_alices_changes(world):
        if attempt == OPENAI[0]:
            body["user"] = "alice"
            answer = world.bob.post("/v1/images/generations", body, headers=_bearer(world, "bob"))
        elif world.target == "local":
            response = httpx.post(
                world.extra["url"] + "/v1/images/generations",
                json=body,
                headers={**_bearer(world, "bob"), "x-api-key": KEYS["alice"]},
                timeout=120,
            )
            answer = Answer(response.status_code, response.json(), dict(response.headers))
        else:
            answer = world.bob.post("/v1/images/generations", body, headers=_bearer(world, "alice"))
        assert answer.status == 200, answer.body
        job_id = answer.headers["x-imagegen-job-id"]
        mine = world.bob.get(f"/jobs/{job_id}")
        assert mine.status == 200
        assert mine.body["manifest"]["caller_namespace"] == world.bob.caller.namespace
        assert_not_found_like_missing(world, "GET", f"/jobs/{job_id}", world.alice.get(f"/jobs/{job_id}"))


def _bearer(world: World, who: str) -> dict[str, str]:
    """The OpenAI SDK's header: the key itself locally; deployed, whatever the client sent (the
    caller is the key id API Gateway writes in the context, not this header)."""
    key = KEYS[who] if world.target == "local" else f"EXAMPLE-{who}-key"
    return {"Authorization": f"Bearer {key}"}


# -- GET /images/search ------------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", SEARCHES)
def test_a_search_finds_only_ones_own_images(world: World, attempt: str) -> None:
    tag = world.keyed.removeprefix("order-")  # a word of every prompt of alice's in this world
    hers = world.alice.get(f"/images/search?q={tag}")
    assert hers.status == 200 and hers.body["count"] >= 2, hers.body  # what there is to find
    alice_keys = {i["key"] for i in hers.body["images"]}
    if attempt == SEARCHES[0]:
        found = world.bob.get(f"/images/search?q={tag}")
    elif attempt == SEARCHES[1]:
        since = hers.body["images"][-1]["created_at"][:10]
        found = world.bob.get(f"/images/search?model=stable-image-core&since={since}&limit=100")
    else:
        page = world.alice.get(f"/images/search?q={tag}&limit=1")
        token = page.body["next_token"]
        assert token, page.body
        found = world.bob.get(f"/images/search?q={tag}&limit=1&next_token={token}")
        missing = world.carol.get(f"/images/search?q={tag}&limit=1&next_token={token}")
        assert found.status == missing.status == 400, found.body
        assert found.body == missing.body and {d["field"] for d in found.body["details"]} == {"next_token"}
        return
    assert found.status == 200, found.body
    assert not alice_keys & {i["key"] for i in found.body["images"]}
    assert all(
        i["key"].startswith(namespace_prefix(world.bob.caller.namespace)) for i in found.body["images"]
    )


# -- GET /links/{token} (the local server; deployed, the same core/lasting_links.py in its own function) ---


def _token(link: str) -> tuple[str, str]:
    payload, _, signature = urlsplit(link).path.rsplit("/", 1)[1].partition(".")
    return payload, signature


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("attempt", LINKS)
def test_a_link_reaches_only_the_image_it_was_minted_for(local_world: World, attempt: str) -> None:
    """A lasting link is a capability, like a presigned URL: alice's works for anyone, and nothing
    made from bob's own links reaches alice's images (403, the answer of a link never issued)."""
    world = local_world
    url = world.extra["url"]
    alice_image = next(i for i in world.manifest["images"] if i["key"])
    assert httpx.get(alice_image["link"]).status_code == 302  # hers works, with no key at all
    bob_image = world.bob.post("/images", {"prompt": "bob's linked image", **ONE}).body["images"][0]
    payload, signature = _token(bob_image["link"])
    text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    version, expires, namespace, _ = text.split("\n", 3)
    alice_ns = world.alice.caller.namespace
    if attempt == LINKS[0]:
        forged = f"{_b64(chr(10).join([version, expires, namespace, alice_image['key']]))}.{signature}"
    elif attempt == LINKS[1]:
        forged = f"{_b64(chr(10).join([version, expires, alice_ns, alice_image['key']]))}.{signature}"
    else:
        forged = f"{_token(alice_image['link'])[0]}.{signature}"
    with nothing_of_alices_changes(world):
        answer = httpx.get(f"{url}/links/{forged}", follow_redirects=False)
        never_issued = httpx.get(f"{url}/links/{_b64('v1')}.{_b64('made up')}", follow_redirects=False)
    assert answer.status_code == never_issued.status_code == 403, answer.text
    assert answer.json() == never_issued.json()


# -- console and events -----------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", CONSOLE_AND_EVENTS)
def test_console_and_event_runs_are_their_own_callers(local_world: World, attempt: str) -> None:
    """An execution started from the console is the console's even when named with alice's namespace
    (its input is a bare request): alice cannot read, cancel or retry it. An event's job is its
    account's, and a detail cannot name a caller."""
    engine, alice = local_world.engine, local_world.alice
    if attempt in CONSOLE_AND_EVENTS[:3]:
        job_id = f"console-{uuid.uuid4().hex[:8]}"
        name = execution_name(alice.caller, job_id)
        result = engine.wait(
            engine.start_execution({"prompt": "an operator's", **ONE}, name=name), timeout=120
        )
        assert (
            result.status == "SUCCEEDED" and result.output["caller_namespace"] == console_caller().namespace
        )
        method, path = {
            CONSOLE_AND_EVENTS[0]: ("GET", f"/jobs/{job_id}"),
            CONSOLE_AND_EVENTS[1]: ("DELETE", f"/jobs/{job_id}"),
            CONSOLE_AND_EVENTS[2]: ("POST", f"/jobs/{job_id}/retry"),
        }[attempt]
        assert_not_found_like_missing(local_world, method, path, alice.call(method, path))
    elif attempt == CONSOLE_AND_EVENTS[3]:
        result = engine.wait(put_request_event(engine, {"prompt": "an event's", **ONE}), timeout=120)
        assert result.output["caller_namespace"] == events_caller(ACCOUNT).namespace
        answer = alice.get(f"/jobs/{result.name}")
        assert_not_found_like_missing(local_world, "GET", f"/jobs/{result.name}", answer)
    else:
        claim = {"kind": "apiKey", "id": "alice"}
        detail = (
            {"prompt": "an event's", "caller": claim}
            if attempt == CONSOLE_AND_EVENTS[4]
            else {"request": {"prompt": "an event's"}, "caller": claim}
        )
        result = engine.wait(put_request_event(engine, detail), timeout=120)
        assert (result.status, result.error) == ("FAILED", "InvalidRequest") and "caller" in result.message


def test_an_operator_may_start_a_job_for_a_caller_with_the_envelope(local_world: World) -> None:
    """The console is trusted (StartExecution rights): an envelope naming alice, under her name, is
    hers. What makes a job someone's is what its entry point wrote, not its name alone."""
    engine, alice = local_world.engine, local_world.alice
    job_id = f"for-alice-{uuid.uuid4().hex[:8]}"
    envelope = ExecutionInput({"prompt": "made for alice", **ONE}, alice.caller).to_document()
    engine.wait(engine.start_execution(envelope, name=execution_name(alice.caller, job_id)), timeout=120)
    job = alice.get(f"/jobs/{job_id}").body
    assert job["status"] == "succeeded" and job["manifest"]["caller_namespace"] == alice.caller.namespace
    assert local_world.bob.get(f"/jobs/{job_id}").status == 404


def test_a_batch_runs_as_its_folders_caller_and_a_line_cannot_name_one(offline_engine: Any) -> None:
    lines = [
        {"prompt": "a batch line", **ONE},
        {"prompt": "a line", **ONE, "caller": {"kind": "apiKey", "id": "alice"}},
    ]
    run = offline_engine.run_batch(
        lines, key=f"batches/tenancy-{uuid.uuid4().hex[:6]}/run.jsonl", tolerated_failure_percentage=60
    )
    assert run.manifest is not None, run.result.message
    first, second = sorted(
        run.manifest.get("items") or _batch_items(offline_engine, run), key=lambda r: r["line"]
    )
    assert first["status"] == "SUCCEEDED" and second["status"] == "INVALID" and "caller" in second["message"]
    folder = run.manifest["source_key"].rsplit("/", 1)[0] + "/"
    namespace = Caller("system", f"batch:{folder}").namespace
    assert first["manifest_key"].startswith(namespace_prefix(namespace))


def _batch_items(engine: Any, run: Any) -> list[dict[str, Any]]:
    body = engine.s3.get_object(Bucket=engine.config.bucket, Key=run.manifest["manifest_key"])["Body"]
    return list(json.loads(body.read())["items"])


# -- who may call at all ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), LOCAL_ROUTES)
@pytest.mark.parametrize("key", [None, "not-a-key-of-this-server"])
def test_the_local_server_with_keys_answers_401_without_a_known_key(
    local_world: World, method: str, path: str, key: str | None
) -> None:
    executions = count_executions(local_world.engine)
    caller = LocalCaller(local_world.extra["url"], None, key or "")
    answer = caller.call(method, path, body={"prompt": "x"} if method == "POST" else None)
    assert answer.status == 401 and answer.body["error"] == "Unauthorized" and answer.body["message"]
    assert set(answer.body) == {"error", "message"}
    assert count_executions(local_world.engine) == executions


def test_the_local_page_asks_for_a_key(local_world: World) -> None:
    config = httpx.get(local_world.extra["url"] + "/config.js")
    assert config.status_code == 200 and '"apiKeyRequired": true' in config.text


def test_the_lambda_refuses_a_request_that_names_nobody(lambda_world: World) -> None:
    nobody = LambdaCaller(lambda_world.alice.module, Caller("apiKey", "-"), {})  # type: ignore[attr-defined]
    executions = count_executions(lambda_world.engine)
    for method, path in [
        ("POST", "/jobs"),
        ("GET", f"/jobs/{lambda_world.keyed}"),
        ("POST", "/images"),
        ("GET", "/jobs"),
    ]:
        answer = nobody.call(method, path, body={"prompt": "x"} if method == "POST" else None)
        assert answer.status == 401 and answer.body["error"] == "Unauthorized", (method, path, answer.body)
    assert count_executions(lambda_world.engine) == executions


def test_each_identity_kind_is_its_own_namespace(lambda_world: World) -> None:
    """The same id under two kinds, or two ids of one kind, are different callers."""
    namespaces = {
        Caller("apiKey", "same").namespace,
        Caller("iam", "same").namespace,
        Caller("cognito", "same").namespace,
        Caller("apiKey", "other").namespace,
        lambda_world.alice.caller.namespace,
        lambda_world.bob.caller.namespace,
    }
    assert len(namespaces) == 6 and all(re.fullmatch(r"[0-9a-f]{12}", n) for n in namespaces)


# -- the figures ------------------------------------------------------------------------------------------


def figures_table() -> str:
    """The table docs/reliability.md shows: cross-caller attempts per target and route."""
    rows = ["| target | route | cross-caller attempts | leaks |", "|---|---|---|---|"]
    rows += [f"| {target} | {route} | {len(tried)} | 0 |" for (target, route), tried in ATTEMPTS.items()]
    total = sum(len(tried) for tried in ATTEMPTS.values())
    rows.append(f"| **all** | | **{total}** | **0** |")
    return "\n".join(rows)


def test_the_documented_figures_are_the_suites() -> None:
    assert figures_table() in DOCS.read_text(), "update docs/reliability.md with figures_table()"
