"""Cancelling a job mid-Map loses nothing: every image stored before or while the cancel arrived is in
the job's manifest, no image is stored after it without being listed, and no model is called for an
image that had not started (the nothing-lost audit, ``imagegen.testing.audit``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from image_pipeline.core.settings import get_settings
from image_pipeline.core.tenancy import anonymous_caller

from imagegen.standin.bedrock_server import FaultPlan
from tests.reliability.support import audit

IMAGES = 8
#: Two branches at a time, half a second each: a cancel after the first two leaves some in flight and
#: some not started.
CONCURRENCY = 2


@pytest.fixture
def two_at_a_time(engine: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The Map runs two branches at once (the plan's max_concurrency comes from the handlers'
    settings), and every model call takes 0.5 s."""
    monkeypatch.setenv("MAP_MAX_CONCURRENCY", str(CONCURRENCY))
    get_settings.cache_clear()
    engine.bedrock.faults = FaultPlan(latency_seconds=0.5)
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def wait_for(api: httpx.Client, job_id: str, done: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = api.get(f"/jobs/{job_id}").json()
        if done(job):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


# The local server of the session is open: its one caller is the anonymous one.
def test_a_job_cancelled_mid_map_keeps_and_lists_every_image_it_stored(
    api: httpx.Client, engine: Any, two_at_a_time: None, folder: str, calls: Any
) -> None:
    request = {"prompt": "cancel me", "count": IMAGES, "seed": 100, "output_folder": folder}
    job_id = api.post("/jobs", json=request).json()["job_id"]
    wait_for(api, job_id, lambda job: (job.get("progress") or {}).get("done", 0) >= CONCURRENCY)

    cancelled = api.delete(f"/jobs/{job_id}")
    assert cancelled.status_code == 202, cancelled.text
    job = wait_for(api, job_id, lambda job: job["status"] not in {"queued", "running", "cancelling"})

    assert job["status"] == "cancelled", job
    manifest = job["manifest"]
    assert manifest["cancelled"] is True and manifest["requested"] == IMAGES
    outcomes = [(i["status"], i["reason_code"]) for i in manifest["images"]]
    made = outcomes.count(("SUCCEEDED", None))
    not_started = outcomes.count(("FAILED", "CANCELLED"))
    assert made + not_started == IMAGES, outcomes
    assert made >= CONCURRENCY and not_started >= 1, outcomes
    # No model call for an image that had not started: one call per image made (no faults but latency).
    assert calls() == made
    # Every stored image is in the manifest, the manifest returned is the one stored.
    report = audit(engine, folder, [manifest], caller=anonymous_caller())
    assert report.ok, report
    assert report.image_objects == made and report.manifests == 1

    # Retrying the cancelled job makes the rest, with their seeds, and loses nothing either.
    retried = api.post(f"/jobs/{job_id}/retry")
    assert retried.status_code == 202, retried.text
    assert [i["index"] for i in retried.json()["images"]] == [
        i["index"] for i in manifest["images"] if i["reason_code"] == "CANCELLED"
    ]
    rest = wait_for(api, retried.json()["job_id"], lambda job: job["status"] in {"succeeded", "failed"})
    assert rest["status"] == "succeeded" and rest["manifest"]["succeeded"] == not_started
    assert audit(engine, folder, [manifest, rest["manifest"]], caller=anonymous_caller()).ok
