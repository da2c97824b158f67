"""The job routes against the local server over real HTTP: the synchronous routes' handoff to a job
(``Prefer: wait``, a slow stand-in), ``GET /jobs``, ``DELETE /jobs/{id}``, ``POST /jobs/{id}/retry``.
The same functions answer deployed (``core/job_control.py``); ``tests/unit/test_http_api_jobs.py`` runs
them through the Lambda handler."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from image_pipeline.core import time_budget

from imagegen.standin.bedrock_server import FaultPlan
from imagegen.testing.audit import audit_bucket
from tests.support import LocalServer


def poll_job(api: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = api.get(f"/jobs/{job_id}").json()
        if job["status"] in {"succeeded", "failed", "cancelled"}:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.1)


def folder() -> str:
    return f"e2e-jobs/{uuid.uuid4().hex[:8]}"


# -- POST /images: the handoff ---------------------------------------------------------------------


def test_a_request_slower_than_its_wait_is_handed_over_and_loses_nothing(
    api: httpx.Client, local_server: LocalServer
) -> None:
    """The stand-in takes 2.5 s an image, the client waits 1 s: 202, then the job's complete manifest."""
    out = folder()
    request = {"prompt": "slow [[fault:latency=2.5]]", "count": 3, "output_folder": out}
    response = api.post("/images", json=request, headers={"Prefer": "wait=1"})
    assert response.status_code == 202, response.text
    job = response.json()
    job_id = job["job_id"]
    # The answer came before the images: the job was still going and none of its three was listed yet.
    assert job["status"] in {"queued", "running"} and job["status_url"] == f"/jobs/{job_id}"
    assert len(job.get("images_so_far", [])) < 3
    assert response.headers["location"] == f"/jobs/{job_id}"
    assert response.headers["preference-applied"] == "wait=1"

    done = poll_job(api, job_id)
    assert done["status"] == "succeeded" and done["manifest"]["succeeded"] == 3
    assert done["manifest"]["request_id"] == job_id
    report = audit_bucket(
        local_server.engine.s3,
        local_server.engine.config.bucket,
        prefix=done["manifest"]["prefix"],
        returned=[done["manifest"]],
    )
    assert report.ok and report.image_objects == 3, report


def test_the_handoff_lists_the_images_already_stored(api: httpx.Client, engine: Any) -> None:
    """Image 0 is made at once, image 1 takes 4 s; a client that waits 2 s gets a 202 whose
    images_so_far (GET /jobs/{id}'s shape for a running job) already holds image 0, with a link that
    shows it."""
    from imagegen.standin.faults import FaultPlan

    engine.bedrock.faults = FaultPlan(latency_by_seed={8: 4.0})
    request = {"prompt": "a handed-over lighthouse", "count": 2, "seed": 7, "cache": False}
    response = api.post("/images", json=request, headers={"Prefer": "wait=2"})
    assert response.status_code == 202, response.text
    job = response.json()
    (first,) = job["images_so_far"]
    assert (first["index"], first["seed"], first["status"]) == (0, 7, "SUCCEEDED")
    shown = api.get(first["url"])
    assert shown.status_code == 200 and shown.content.startswith(b"\x89PNG")
    running = api.get(f"/jobs/{job['job_id']}").json()
    if running["status"] == "running":  # the same entries GET /jobs/{id} lists, in the same shape
        assert set(running["images_so_far"][0]) == set(first)
    done = poll_job(api, job["job_id"])
    assert done["manifest"]["succeeded"] == 2


def test_a_request_done_within_the_default_wait_is_answered_with_its_manifest(api: httpx.Client) -> None:
    response = api.post("/images", json={"prompt": "a quick cat [[fault:latency=0.3]]", "count": 2})
    assert response.status_code == 200, response.text
    assert "preference-applied" not in response.headers
    manifest = response.json()
    assert manifest["succeeded"] == 2 and manifest["cancelled"] is False
    # What it cost: the model's price for each image, an estimate of the rest, the table's date.
    cost = manifest["cost"]
    assert cost["model_usd"] == pytest.approx(2 * cost["model_price"]["usd_per_image"])
    assert [i["cost_usd"] for i in manifest["images"]] == [cost["model_price"]["usd_per_image"]] * 2
    assert cost["workflow_estimate_usd"]["total"] > 0 and cost["prices"]["as_of"]
    # The run was a job: GET /jobs/{its request id} answers it too.
    job = api.get(f"/jobs/{manifest['request_id']}").json()
    assert job["status"] == "succeeded" and job["manifest"]["manifest_key"] == manifest["manifest_key"]


def test_the_wait_is_capped_at_what_the_deployed_api_can_wait(api: httpx.Client) -> None:
    response = api.get("/images", params={"prompt": "a cat"}, headers={"Prefer": "wait=600"})
    assert response.status_code == 200
    assert response.headers["preference-applied"] == f"wait={time_budget.longest_sync_wait(29):g}"
    asked_async = api.post(
        "/images",
        json={"prompt": "later [[fault:latency=1]]", "count": 1},
        headers={"Prefer": "respond-async"},
    )
    assert asked_async.status_code == 202 and asked_async.headers["preference-applied"] == "respond-async"
    assert poll_job(api, asked_async.json()["job_id"])["status"] == "succeeded"


# -- DELETE /jobs/{id} -----------------------------------------------------------------------------------


def test_cancel_a_running_job(api: httpx.Client) -> None:
    job_id = api.post("/jobs", json={"prompt": "long [[fault:latency=2]]", "count": 2}).json()["job_id"]
    response = api.delete(f"/jobs/{job_id}")
    assert response.status_code == 202, response.text
    assert response.json() == {"job_id": job_id, "status": "cancelling", "status_url": f"/jobs/{job_id}"}
    assert api.get(f"/jobs/{job_id}").json()["status"] in {"cancelling", "cancelled"}
    again = api.delete(f"/jobs/{job_id}")
    assert again.status_code == 409 and again.json()["error"] == "JobAlreadyCancelled"
    job = poll_job(api, job_id)
    assert job["status"] == "cancelled" and job["manifest"]["cancelled"] is True


def test_cancelling_a_finished_unknown_or_malformed_job(api: httpx.Client) -> None:
    job_id = api.post("/jobs", json={"prompt": "a cat", "count": 1}).json()["job_id"]
    poll_job(api, job_id)
    finished = api.delete(f"/jobs/{job_id}")
    assert finished.status_code == 409 and finished.json()["error"] == "JobFinished"
    assert "nothing to cancel" in finished.json()["message"]
    assert api.delete("/jobs/never-started").status_code == 404
    malformed = api.delete("/jobs/bad$id")
    assert malformed.status_code == 400 and malformed.json()["details"][0]["field"] == "id"


# -- GET /jobs ---------------------------------------------------------------------------------------------


def test_the_list_is_newest_first_and_pages(api: httpx.Client) -> None:
    started = [api.post("/jobs", json={"prompt": f"list {i}", "count": 1}).json()["job_id"] for i in range(3)]
    first = api.get("/jobs", params={"limit": "2"})
    assert first.status_code == 200
    page = first.json()
    assert [j["job_id"] for j in page["jobs"]] == started[::-1][:2] and page["next_token"]
    second = api.get("/jobs", params={"limit": "2", "next_token": page["next_token"]}).json()
    assert second["jobs"][0]["job_id"] == started[0]
    for job_id in started:
        poll_job(api, job_id)
    succeeded = api.get("/jobs", params={"status": "succeeded", "limit": "100"}).json()["jobs"]
    assert set(started) <= {j["job_id"] for j in succeeded}


def test_the_list_carries_what_a_history_shows(api: httpx.Client, local_server: LocalServer) -> None:
    """One GET /jobs renders a history: each job's prompt, model, count, times, counts and a thumbnail
    link that serves its first image; a job is listed as running from the moment it is accepted."""
    prompt = f"history {uuid.uuid4().hex[:8]}"
    slow = api.post("/jobs", json={"prompt": f"{prompt} [[fault:latency=2]]", "count": 2}).json()["job_id"]
    listed = {j["job_id"]: j for j in api.get("/jobs", params={"limit": "5"}).json()["jobs"]}
    assert listed[slow]["status"] == "running" and listed[slow]["thumbnail"] is None
    assert listed[slow]["stopped_at"] is None and listed[slow]["succeeded"] is None
    done = api.post("/jobs", json={"prompt": prompt, "count": 2, "negative_prompt": "fog"}).json()["job_id"]
    api.delete(f"/jobs/{slow}")
    manifest = poll_job(api, done)["manifest"]
    poll_job(api, slow)
    # the workflow's last step wrote the ends (the list has nothing to settle): read the items themselves
    table = local_server.engine.index_table
    namespace = manifest["caller_namespace"]  # the local server's caller, who made both
    items = {j: table.get_item(Key={"pk": f"JOB#{namespace}#{j}", "sk": "JOB"})["Item"] for j in (done, slow)}
    assert (items[done]["status"], items[slow]["status"]) == ("SUCCEEDED", "CANCELLED")
    listed = {j["job_id"]: j for j in api.get("/jobs", params={"limit": "5"}).json()["jobs"]}
    job = listed[done]
    assert (job["prompt"], job["negative_prompt"], job["count"], job["status"]) == (
        prompt,
        "fog",
        2,
        "succeeded",
    )
    assert job["model"] == manifest["model"]["id"] and (job["succeeded"], job["filtered"], job["failed"]) == (
        2,
        0,
        0,
    )
    assert job["created_at"].startswith(job["started_at"][:19]) and job["stopped_at"] >= job["started_at"]
    assert job["thumbnail"]["key"] == manifest["images"][0]["key"] and job["error"] is None
    image = httpx.get(job["thumbnail"]["url"])
    assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert listed[slow]["status"] == "cancelled" and listed[slow]["stopped_at"]
    cancelled = api.get("/jobs", params={"status": "cancelled", "limit": "100"}).json()["jobs"]
    assert slow in {j["job_id"] for j in cancelled}


@pytest.mark.parametrize(
    ("params", "field"),
    [({"status": "finished"}, "status"), ({"limit": "500"}, "limit"), ({"next_token": "%%%"}, "next_token")],
)
def test_a_bad_list_parameter_is_400(api: httpx.Client, params: dict[str, str], field: str) -> None:
    response = api.get("/jobs", params=params)
    assert response.status_code == 400 and response.json()["details"][0]["field"] == field


# -- POST /jobs/{id}/retry ---------------------------------------------------------------------------------


def test_retry_makes_again_what_failed_with_the_same_seeds(
    api: httpx.Client, local_server: LocalServer
) -> None:
    # Each image's first four model calls time out: the state machine's two retries (three attempts) do
    # not get through, the job fails; the retried job gets through (the directive's count is used up by
    # its first attempt at most). Four, not three: an attempt whose error reached the state machine under
    # another name is retried by another retrier once more, and the first job must fail all the same.
    request = {"prompt": "retry me [[fault:timeout=4]]", "count": 2, "seed": 500, "output_folder": folder()}
    failed_id = api.post("/jobs", json=request).json()["job_id"]
    failed = poll_job(api, failed_id)
    assert failed["status"] == "failed" and failed["error"]["error"] == "ImagesFailed"
    response = api.post(f"/jobs/{failed_id}/retry")
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["retry_of"] == failed_id
    assert accepted["images"] == [{"index": 0, "seed": 500}, {"index": 1, "seed": 501}]
    assert response.headers["location"] == f"/jobs/{accepted['job_id']}"
    retried = poll_job(api, accepted["job_id"])
    assert retried["status"] == "succeeded", retried
    manifest = retried["manifest"]
    assert manifest["retry_of"] == failed_id and manifest["succeeded"] == 2
    assert [(i["index"], i["seed"]) for i in manifest["images"]] == [(0, 500), (1, 501)]
    assert [i["key"].rsplit("/", 1)[1] for i in manifest["images"]] == [
        "image-00-500.png",
        "image-01-501.png",
    ]
    assert manifest["prefix"].endswith(f"/{accepted['job_id']}/")
    # Nothing left to retry now.
    nothing = api.post(f"/jobs/{accepted['job_id']}/retry")
    assert nothing.status_code == 409 and nothing.json()["error"] == "NothingToRetry"
    engine = local_server.engine
    assert audit_bucket(engine.s3, engine.config.bucket, prefix=f"{request['output_folder']}").ok


def test_filtered_images_are_retried_only_when_asked(api: httpx.Client, local_server: LocalServer) -> None:
    local_server.engine.bedrock.faults = FaultPlan(block_output_seeds={601})
    job_id = api.post("/jobs", json={"prompt": "two cats", "count": 2, "seed": 600}).json()["job_id"]
    job = poll_job(api, job_id)
    assert [i["status"] for i in job["manifest"]["images"]] == ["SUCCEEDED", "FILTERED"]
    refused = api.post(f"/jobs/{job_id}/retry")
    assert refused.status_code == 409 and "include_filtered" in refused.json()["message"]
    asked = api.post(f"/jobs/{job_id}/retry", json={"include_filtered": True})
    assert asked.status_code == 202 and asked.json()["images"] == [{"index": 1, "seed": 601}]
    assert api.post("/jobs/never-started/retry").status_code == 404
    running = api.post("/jobs", json={"prompt": "slow [[fault:latency=2]]", "count": 1}).json()["job_id"]
    still = api.post(f"/jobs/{running}/retry")
    assert still.status_code == 409 and still.json()["error"] == "JobRunning"
