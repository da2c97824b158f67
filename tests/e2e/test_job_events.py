"""Live progress: ``images_so_far`` in ``GET /jobs/{id}`` and ``GET /jobs/{id}/events`` (Server-Sent
Events), on the local server (one open stream, read with httpx) and through the deployed API's Lambda
with API Gateway events (one batch per request, ``retry:``, resumed with ``Last-Event-ID``), over the
session's offline engine. The stand-in makes image 0 at once and the others 3 s later
(``FaultPlan.latency_by_seed``), so the first image is stored well before the job ends."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from image_pipeline.core.execution_input import ExecutionInput
from image_pipeline.core.jobs import start_job
from image_pipeline.core.tenancy import Caller

from imagegen.runtime.lambda_router import LambdaContext
from imagegen.standin.bedrock_server import FaultPlan
from tests.support import LocalServer, load_event, with_identity

#: Image 0 (seed 1) at once, images 1-3 (seeds 2-4) 3 s later.
STAGGERED = FaultPlan(latency_by_seed={2: 3.0, 3: 3.0, 4: 3.0})
#: The API key id of the canonical API Gateway events (tests/events/apigw_*.json).
EVENT_CALLER = Caller("apiKey", "k1a2b3c4d5")


def request(**extra: Any) -> dict[str, Any]:
    return {"prompt": "a lighthouse, live", "count": 4, "seed": 1, "output_folder": "live", **extra}


def parse_events(text: str) -> list[dict[str, Any]]:
    """The events of a ``text/event-stream`` body: ``{"id", "event", "data"}`` (``retry`` alone too)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            if line and not line.startswith(":"):
                fields[name] = json.loads(value) if name == "data" else value
        if fields:
            events.append(fields)
    return events


# -- the local server: one open stream -------------------------------------------------------------


def test_the_stream_sends_each_image_as_it_is_stored_then_the_end(
    api: httpx.Client, local_server: LocalServer
) -> None:
    local_server.engine.bedrock.faults = STAGGERED
    job_id = api.post("/jobs", json=request()).json()["job_id"]
    arrivals: list[tuple[float, dict[str, Any]]] = []
    seen_running: dict[str, Any] | None = None
    started = time.monotonic()
    with api.stream("GET", f"/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        buffer = ""
        for chunk in response.iter_text():
            buffer += chunk
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                for event in parse_events(block + "\n\n"):
                    if "event" in event:
                        arrivals.append((time.monotonic() - started, event))
                if len(arrivals) == 1 and seen_running is None:  # the first image: the job still runs
                    seen_running = api.get(f"/jobs/{job_id}").json()
    names = [e["event"] for _, e in arrivals]
    assert names == ["image"] * 4 + ["completed"]
    assert [e["id"] for _, e in arrivals] == ["1", "2", "3", "4", "5"]
    first_at, first = arrivals[0]
    end_at, end = arrivals[-1]
    assert (
        first["data"]["index"] == 0 and first["data"]["seed"] == 1 and first["data"]["status"] == "SUCCEEDED"
    )
    assert end_at - first_at > 1.0, "the first image came with the others, not as it was stored"
    assert sorted(e["data"]["index"] for _, e in arrivals[:4]) == [0, 1, 2, 3]
    image = api.get(first["data"]["url"])  # the server's own signed link
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert end["data"]["status"] == "succeeded" and end["data"]["manifest"]["succeeded"] == 4
    assert "/files/" in end["data"]["manifest"]["images"][0]["url"]

    assert seen_running is not None and seen_running["status"] == "running"
    (stored,) = [i for i in seen_running["images_so_far"] if i["index"] == 0]
    assert (
        stored["status"] == "SUCCEEDED" and "/files/" in stored["url"] and stored["key"].endswith("-00-1.png")
    )


def test_last_event_id_resumes_and_a_client_with_everything_gets_204(api: httpx.Client) -> None:
    job_id = api.post("/jobs", json=request(count=3)).json()["job_id"]
    whole = parse_events(api.get(f"/jobs/{job_id}/events").text)  # read to its end
    assert [e.get("event") for e in whole[1:]] == ["image", "image", "image", "completed"]
    assert whole[0] == {"retry": "2000"}

    rest = parse_events(api.get(f"/jobs/{job_id}/events", headers={"Last-Event-ID": "2"}).text)
    assert [(e["id"], e["event"]) for e in rest[1:]] == [("3", "image"), ("4", "completed")]
    assert rest[1]["data"] == whole[3]["data"] | {
        "url": rest[1]["data"]["url"],
        "download_url": rest[1]["data"]["download_url"],
    }
    by_query = parse_events(api.get(f"/jobs/{job_id}/events", params={"last_event_id": "3"}).text)
    assert [e.get("event") for e in by_query[1:]] == ["completed"]
    assert api.get(f"/jobs/{job_id}/events", headers={"Last-Event-ID": "4"}).status_code == 204


def test_a_failed_job_ends_with_failed(api: httpx.Client) -> None:
    job_id = api.post("/jobs", json=request(prompt="blocked [[fault:block-prompt]]", count=2)).json()[
        "job_id"
    ]
    events = parse_events(api.get(f"/jobs/{job_id}/events").text)[1:]
    assert [e["event"] for e in events] == ["image", "image", "failed"]
    assert {e["data"]["status"] for e in events[:2]} == {"FILTERED"}
    assert "url" not in events[0]["data"] and events[0]["data"]["key"] is None
    assert events[-1]["data"]["error"]["error"] == "AllImagesFiltered"


@pytest.mark.parametrize(
    ("path", "headers", "status", "error"),
    [
        ("/jobs/no-such-job/events", {}, 404, "JobNotFound"),
        ("/jobs/bad$id/events", {}, 400, "InvalidRequest"),
        ("/jobs/no-such-job/events", {"Last-Event-ID": "x"}, 400, "InvalidRequest"),
    ],
)
def test_bad_event_requests(
    api: httpx.Client, path: str, headers: dict[str, str], status: int, error: str
) -> None:
    response = api.get(path, headers=headers)
    assert response.status_code == status and response.json()["error"] == error


# -- the deployed API's Lambda: one batch per request ----------------------------------------------


@pytest.fixture
def lambda_events(engine: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``call(job_id, last_event_id, event=...)`` -> the handler's answer to ``GET /jobs/{id}/events``."""
    from image_pipeline.handlers import http_api

    monkeypatch.setenv("JOBS_STATE_MACHINE_ARN", engine.state_machines["jobs"])
    http_api.environment.cache_clear()

    def call(job_id: str, last: int, event: dict[str, Any] | None = None) -> dict[str, Any]:
        sent = json.loads(json.dumps(event or load_event("apigw_get_job_events")))
        sent["path"] = f"/jobs/{job_id}/events"
        sent["pathParameters"] = {"id": job_id}
        sent["requestContext"]["path"] = f"/v1/jobs/{job_id}/events"
        sent["headers"]["Last-Event-ID"] = str(last)
        sent["multiValueHeaders"]["Last-Event-ID"] = [str(last)]
        return dict(http_api.handler(sent, LambdaContext(function_name="imagegen-http-api")))

    yield call
    http_api.environment.cache_clear()


def test_the_deployed_route_answers_batches_that_resume_to_the_end(engine: Any, lambda_events: Any) -> None:
    engine.bedrock.faults = STAGGERED
    job_id = f"live-{uuid.uuid4().hex[:8]}"
    start_job(engine.sfn, engine.state_machines["jobs"], ExecutionInput(request(), EVENT_CALLER), job_id)
    received: list[dict[str, Any]] = []
    batches = 0
    deadline = time.monotonic() + 60
    while True:
        answer = lambda_events(job_id, int(received[-1]["id"]) if received else 0)
        batches += 1
        if answer["statusCode"] == 204:
            break
        assert answer["statusCode"] == 200, answer["body"]
        assert answer["multiValueHeaders"]["Content-Type"] == ["text/event-stream"]
        body = parse_events(answer["body"])
        assert body[0] == {"retry": "2000"}  # the client asks again after the batch
        received += body[1:]
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert [e["event"] for e in received] == ["image"] * 4 + ["completed"]
    assert [int(e["id"]) for e in received] == [1, 2, 3, 4, 5]  # no event twice, none lost
    assert received[0]["data"]["index"] == 0 and received[0]["data"]["url"].startswith("https://")
    assert batches >= 3  # the first image came in a batch of its own, before the others
    assert received[-1]["data"]["manifest"]["succeeded"] == 4


def test_the_deployed_route_answers_another_callers_job_as_missing(engine: Any, lambda_events: Any) -> None:
    job_id = f"live-{uuid.uuid4().hex[:8]}"
    start_job(
        engine.sfn, engine.state_machines["jobs"], ExecutionInput(request(count=1), EVENT_CALLER), job_id
    )
    other = with_identity(load_event("apigw_get_job_events"), api_key_id="someone-else")
    answer = lambda_events(job_id, 0, event=other)
    assert answer["statusCode"] == 404 and json.loads(answer["body"])["error"] == "JobNotFound"
    missing = lambda_events(f"live-{uuid.uuid4().hex[:8]}", 0)
    assert json.loads(answer["body"])["error"] == json.loads(missing["body"])["error"]
    assert answer["statusCode"] == missing["statusCode"]
