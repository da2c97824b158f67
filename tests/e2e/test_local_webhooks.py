"""Signed webhooks offline (``imagegen.runtime.local_webhooks``): jobs posted to the local API with a
webhook are delivered to a receiver on 127.0.0.1, signed, and verified with the ``standardwebhooks``
package; a receiver that fails twice gets a third attempt; one that always fails leaves the job
succeeded and its delivery in the dead-letter queue; GET /jobs/{id} shows the attempts; a webhook that
is not this machine is 400 before anything starts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from imagegen.runtime.local_webhooks import LocalWebhooks
from tests.webhook_receiver import Receiver, webhook_receiver

SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


@pytest.fixture
def webhooks(local_server: Any, engine: Any) -> Iterator[LocalWebhooks]:
    with LocalWebhooks(engine, secret=SECRET, schedule=(0, 0), max_attempts=3, poll_seconds=0.05) as worker:
        yield worker


def _job(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    answer = api.post("/jobs", json={"prompt": "a lighthouse", "count": 2, "seed": 7, **fields})
    assert answer.status_code == 202, answer.text
    return dict(answer.json())


def _until(check: Any, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def _webhooks_of(api: httpx.Client, job_id: str, count: int) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        job = api.get(f"/jobs/{job_id}").json()
        records = job.get("webhooks", [])
        finished = [r for r in records if r.get("delivered_at") or r.get("dead_lettered")]
        return records if len(finished) == count else None

    return list(_until(done))


def _verified(receiver: Receiver) -> list[dict[str, Any]]:
    return [Webhook(SECRET).verify(r.body, r.headers) for r in receiver.received]


def test_the_job_and_each_image_are_delivered_signed(api: httpx.Client, webhooks: LocalWebhooks) -> None:
    with webhook_receiver() as receiver:
        job = _job(api, webhook=receiver.url, webhook_events=["completed", "image"])
        records = _webhooks_of(api, job["job_id"], 3)
        bodies = _verified(receiver)
    assert sorted(b["type"] for b in bodies) == ["job.completed", "job.image", "job.image"]
    (completed,) = [b for b in bodies if b["type"] == "job.completed"]
    assert completed["job"]["job_id"] == job["job_id"]
    assert completed["job"]["status"] == "succeeded"
    assert [i["seed"] for i in completed["job"]["manifest"]["images"]] == [7, 8]
    assert sorted(b["image"]["index"] for b in bodies if b["type"] == "job.image") == [0, 1]
    assert [(r["event"], r["attempts"], r["last_status"]) for r in records] == [
        ("image", 1, 200),
        ("image", 1, 200),
        ("completed", 1, 200),
    ]


@pytest.fixture
def lasting_links(local_server: Any, engine: Any) -> Iterator[str]:
    """The engine's functions mint lasting links to the local server (``imagegen serve`` does this)."""
    engine.set_links_base_url(local_server.url)
    yield local_server.url
    engine.set_links_base_url(None)


def test_an_image_is_delivered_as_it_is_stored_before_its_job_ends(
    api: httpx.Client, webhooks: LocalWebhooks, engine: Any, lasting_links: str
) -> None:
    """With a slow second image, image 0's webhook (queued by the branch that stored it) arrives while
    the job still runs, and before the job's completion; image 1's after it was stored, then the end.
    Each body carries the image's lasting link, which the server follows."""
    from imagegen.standin.faults import FaultPlan

    engine.bedrock.faults = FaultPlan(latency_by_seed={8: 4.0})
    with webhook_receiver() as receiver:
        # the model makes both images (not the prompt cache, which would serve a seen prompt at once)
        job = _job(api, webhook=receiver.url, webhook_events=["image", "completed"], cache=False)

        def first_image() -> dict[str, Any] | None:
            bodies = _verified(receiver)
            return next((b for b in bodies if b["type"] == "job.image"), None)

        first = _until(first_image, 30)
        status_then = api.get(f"/jobs/{job['job_id']}").json()["status"]
        records = _webhooks_of(api, job["job_id"], 3)
        bodies = _verified(receiver)
    assert first["image"]["index"] == 0
    assert status_then == "running"  # delivered while image 1 was still being made
    assert [b["type"] for b in bodies][-1] == "job.completed"
    assert [b["image"]["index"] for b in bodies if b["type"] == "job.image"] == [0, 1]
    assert (first["image"]["seed"], first["image"]["status"]) == (7, "SUCCEEDED")
    assert first["image"]["key"].endswith(".png") and first["image"]["url"]
    assert first["image"]["link"].startswith(f"{lasting_links}/links/")
    followed = api.get(first["image"]["link"], follow_redirects=True)
    assert followed.status_code == 200 and followed.content.startswith(b"\x89PNG")
    (completed,) = [b for b in bodies if b["type"] == "job.completed"]
    assert all(
        i["link"].startswith(f"{lasting_links}/links/") for i in completed["job"]["manifest"]["images"]
    )
    assert [(r["event"], r.get("index"), r["attempts"]) for r in records] == [
        ("image", 0, 1),
        ("image", 1, 1),
        ("completed", None, 1),
    ]


def test_a_receiver_that_fails_twice_gets_a_third_attempt(api: httpx.Client, webhooks: LocalWebhooks) -> None:
    with webhook_receiver([500, 502]) as receiver:
        job = _job(api, webhook=receiver.url)
        (record,) = _webhooks_of(api, job["job_id"], 1)
        assert len(receiver.received) == 3
        assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
        assert _verified(receiver)[-1]["job"]["job_id"] == job["job_id"]
    assert (record["attempts"], record["last_status"], record["last_error"]) == (3, 200, None)
    assert record["delivered_at"]


def test_a_receiver_that_always_fails_never_fails_the_job(api: httpx.Client, webhooks: LocalWebhooks) -> None:
    with webhook_receiver(always=503) as receiver:
        job = _job(api, webhook=receiver.url)
        (record,) = _webhooks_of(api, job["job_id"], 1)
        assert len(receiver.received) == 3
    assert (record["attempts"], record["last_status"], record["dead_lettered"]) == (3, 503, True)
    assert api.get(f"/jobs/{job['job_id']}").json()["status"] == "succeeded"
    dead = _until(webhooks.dead_letters, 30)
    assert [d["webhook_delivery"]["event"] for d in dead] == ["completed"]


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "https://169.254.169.254/latest",
        "https://example.com/hook",
        "ftp://127.0.0.1/",
    ],
)
def test_a_webhook_off_this_machine_is_400_before_anything_starts(api: httpx.Client, url: str) -> None:
    answer = api.post("/jobs", json={"prompt": "a lighthouse", "webhook": url})
    assert answer.status_code == 400, answer.text
    assert "webhook" in answer.text


def test_imagegen_submit_webhook(
    local_server: Any, webhooks: LocalWebhooks, capsys: pytest.CaptureFixture[str]
) -> None:
    """``imagegen submit --webhook URL --webhook-event image``: the request carries them."""
    from imagegen.cli.main import main

    with webhook_receiver() as receiver:
        command = ["submit", "a lighthouse", "--count", "1", "--seed", "3", "--api", local_server.url]
        assert main([*command, "--webhook", receiver.url, "--webhook-event", "image"]) == 0
        _until(lambda: len(receiver.received) == 1)
        (body,) = _verified(receiver)
    assert body["type"] == "job.image"
    assert body["image"]["seed"] == 3
    assert body["job_id"] in capsys.readouterr().out


def test_imagegen_serve_refuses_a_secret_that_is_not_base64() -> None:
    from imagegen.cli.main import main

    assert main(["serve", "--webhook-secret", "whsec_not base64!", "--port", "0"]) != 0
