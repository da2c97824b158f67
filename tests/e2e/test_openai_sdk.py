"""The official ``openai`` Python SDK against ``imagegen serve``: ``POST /v1/images/generations``.

Three lines of client code, as docs/api.md shows them: ``OpenAI(base_url=<server>/v1, api_key=...)``
and ``client.images.generate(...)``. The images come from the same workflow (a job of the caller, in
S3 with a manifest); errors are the SDK's own exception classes with ``param``; its retries on 429
wait our ``Retry-After``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from imagegen.standin.bedrock_server import FaultPlan
from tests.support import LocalServer, serve

PNG = b"\x89PNG\r\n\x1a\n"
KEY = "sdk-secret-1"


@pytest.fixture(scope="module")
def keyed_server(offline_engine: Any) -> Iterator[str]:
    """A second local server over the session engine, with ``--api-key sdk=<KEY>``."""
    from imagegen.runtime.local_api import create_app

    with serve(create_app(offline_engine, api_keys={"sdk": KEY})) as url:
        yield url


def client(url: str, key: str = "unused", **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, **options)


def test_generates_images_as_urls(local_server: LocalServer, engine: Any) -> None:
    result = client(local_server.url).images.generate(prompt="a red porsche", n=2, size="1024x1024")
    assert len(result.data) == 2 and result.created > 0
    assert all(image.url and image.b64_json is None for image in result.data)
    fetched = httpx.get(result.data[0].url or "", timeout=30)
    assert fetched.status_code == 200 and fetched.content.startswith(PNG)


def test_generates_images_as_b64_json_with_our_extras(local_server: LocalServer, engine: Any) -> None:
    raw = client(local_server.url).images.with_raw_response.generate(
        prompt="a lighthouse at dusk",
        response_format="b64_json",
        extra_body={"seed": 42, "negative_prompt": "fog", "output_folder": "sdk"},
    )
    result = raw.parse()
    assert len(result.data) == 1  # OpenAI's default n is 1
    png = base64.b64decode(result.data[0].b64_json or "")
    assert png.startswith(PNG)
    # The job is the caller's, stored with a manifest: GET /jobs/{id} names its seed and folder.
    job_id = raw.headers["x-imagegen-job-id"]
    job = httpx.get(f"{local_server.url}/jobs/{job_id}", timeout=30).json()
    assert job["status"] == "succeeded"
    image = job["manifest"]["images"][0]
    assert image["seed"] == 42 and "/sdk/" in image["key"]


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"size": "1792x1024"}, "size"),
        ({"n": 0}, "n"),
        ({"n": 41}, "n"),
        ({"model": "dall-e-3"}, "model"),
        ({"model": "no-such-model"}, "model"),
        ({"quality": "hd"}, "quality"),
        ({"response_format": "jpeg"}, "response_format"),
    ],
)
def test_bad_input_is_bad_request_with_param(
    local_server: LocalServer, options: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client(local_server.url, max_retries=0).images.generate(prompt="a cat", **options)
    assert raised.value.status_code == 400
    assert raised.value.param == param
    assert isinstance(raised.value.body, dict) and raised.value.body["param"] == param


def test_filtered_prompt_is_a_content_policy_violation(local_server: LocalServer, engine: Any) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client(local_server.url, max_retries=0).images.generate(prompt="a cat [[fault:block-prompt]]")
    assert raised.value.code == "content_policy_violation"


def test_key_required_when_the_server_has_keys(keyed_server: str, engine: Any) -> None:
    with pytest.raises(openai.AuthenticationError) as raised:
        client(keyed_server, key="wrong-key").images.generate(prompt="a cat")
    assert raised.value.status_code == 401 and raised.value.code == "invalid_api_key"
    # No Authorization header at all: the same 401.
    bare = httpx.post(f"{keyed_server}/v1/images/generations", json={"prompt": "a cat"}, timeout=30)
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "invalid_api_key"
    # The right key, as the SDK sends it.
    assert len(client(keyed_server, key=KEY).images.generate(prompt="a cat").data) == 1


def test_bearer_is_accepted_on_this_route_only(keyed_server: str, engine: Any) -> None:
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{keyed_server}/models", headers=bearer, timeout=30).status_code == 401
    assert httpx.get(f"{keyed_server}/models", headers={"x-api-key": KEY}, timeout=30).status_code == 200


def test_unknown_route_is_openai_404(local_server: LocalServer) -> None:
    with pytest.raises(openai.NotFoundError):
        client(local_server.url, max_retries=0).images.edit(image=b"x", prompt="a cat")


def test_retries_on_429_wait_our_retry_after(local_server: LocalServer, engine: Any) -> None:
    engine.bedrock.faults = FaultPlan(throttle_rate=1.0)
    sent: list[float] = []
    answered: list[float] = []
    counting = httpx.Client(
        event_hooks={
            "request": [lambda _: sent.append(time.monotonic())],
            "response": [lambda _: answered.append(time.monotonic())],
        }
    )
    sdk = client(local_server.url, max_retries=1, http_client=counting)
    with pytest.raises(openai.RateLimitError) as raised:
        sdk.images.generate(prompt="a cat")
    retry_after = int(raised.value.response.headers["retry-after"])
    assert retry_after >= 1
    assert len(sent) == 2  # the first request and one retry
    # The SDK waited our Retry-After from the first 429 to its retry (its own first backoff is at
    # most 0.5 s).
    assert sent[1] - answered[0] >= retry_after - 0.05
