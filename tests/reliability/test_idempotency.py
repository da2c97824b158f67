"""Idempotency: the same key twice (or ten times at once) is one job and one set of images.

Engine level: Standard executions are idempotent on their name. API level: ``POST /jobs`` with an
``Idempotency-Key`` names the execution after the key. Both are checked under concurrency, while the
job is running (slowed by throttling) and after it has finished.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from image_pipeline.core.tenancy import Caller, anonymous_caller, execution_name

from imagegen.standin.bedrock_server import FaultPlan
from tests.reliability.support import audit, folder_prefix
from tests.support import count_executions

SMALL = {"model": "stable-image-core"}
RETRIES = 10


def _images(engine: Any, folder: str, caller: Caller | None = None) -> list[str]:
    return [k for k in engine.list_keys(folder_prefix(folder, caller)) if k.endswith(".png")]


def _job_arn(engine: Any, key: str) -> str:
    """The execution of the local server's (anonymous) caller's job ``key``."""
    name = execution_name(anonymous_caller(), key)
    return engine.state_machines["jobs"].replace(":stateMachine:", ":execution:") + f":{name}"


def test_concurrent_starts_with_one_name_are_one_execution(engine: Any, folder: str) -> None:
    engine.bedrock.faults = FaultPlan(latency_seconds=0.3)
    name = f"idem-{uuid.uuid4().hex[:8]}"
    request = {"prompt": "once only", "count": 3, "seed": 5, "output_folder": folder, **SMALL}
    executions, calls = count_executions(engine), engine.bedrock.invocations
    with ThreadPoolExecutor(max_workers=RETRIES) as pool:
        arns = set(
            pool.map(lambda _: engine.start_execution(request, name=name, kind="jobs"), range(RETRIES))
        )
    assert len(arns) == 1
    result = engine.wait(arns.pop(), timeout=120)
    assert result.status == "SUCCEEDED", result.message
    assert count_executions(engine) == executions + 1
    assert engine.bedrock.invocations - calls == 3
    assert len(_images(engine, folder)) == 3
    assert audit(engine, folder, [result.output]).ok


def test_after_the_job_the_name_generates_nothing_more(engine: Any, folder: str) -> None:
    name = f"idem-{uuid.uuid4().hex[:8]}"
    request = {"prompt": "done once", "count": 2, "output_folder": folder, **SMALL}
    result = engine.run(request, name=name, kind="jobs")
    assert result.status == "SUCCEEDED", result.message
    calls = engine.bedrock.invocations
    with pytest.raises(engine.sfn.exceptions.ExecutionAlreadyExists):
        engine.start_execution(request, name=name, kind="jobs")
    assert engine.bedrock.invocations == calls
    assert len(_images(engine, folder)) == 2


def test_api_retries_of_one_key_are_one_job_and_one_set_of_images(
    api: httpx.Client, local_server: Any, engine: Any, folder: str
) -> None:
    """Ten concurrent retries while the job is slowed by throttling, then two after it finished."""
    engine.bedrock.faults = FaultPlan(throttle_first=2, latency_seconds=0.2)
    key = f"rel-{uuid.uuid4().hex[:12]}"
    body = {"prompt": "a retried request", "count": 2, "seed": 9, "output_folder": folder, **SMALL}
    executions, calls = count_executions(engine), engine.bedrock.invocations

    def submit(_: int) -> httpx.Response:
        with httpx.Client(base_url=local_server.url, timeout=60) as client:
            return client.post("/jobs", json=body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(max_workers=RETRIES) as pool:
        answers = list(pool.map(submit, range(RETRIES)))
    assert [a.status_code for a in answers] == [202] * RETRIES, [a.text for a in answers]
    assert {a.json()["job_id"] for a in answers} == {key}
    result = engine.wait(_job_arn(engine, key), timeout=120)
    assert result.status == "SUCCEEDED", result.message
    late = [api.post("/jobs", json=body, headers={"Idempotency-Key": key}) for _ in range(2)]
    assert [(a.status_code, a.json()["job_id"], a.json()["status"]) for a in late] == [
        (202, key, "succeeded")
    ] * 2
    assert count_executions(engine) == executions + 1
    assert engine.bedrock.invocations - calls == 2 + 2  # two images, two throttled calls retried
    assert len(_images(engine, folder, anonymous_caller())) == 2
    job = api.get(f"/jobs/{key}").json()
    assert job["status"] == "succeeded" and job["manifest"]["succeeded"] == 2
    assert audit(engine, folder, [job["manifest"]], anonymous_caller()).ok


def test_api_key_reused_for_another_request_starts_nothing(
    api: httpx.Client, engine: Any, folder: str
) -> None:
    key = f"rel-{uuid.uuid4().hex[:12]}"
    body = {"prompt": "first use of the key", "count": 1, "output_folder": folder, **SMALL}
    assert api.post("/jobs", json=body, headers={"Idempotency-Key": key}).status_code == 202
    engine.wait(_job_arn(engine, key), timeout=120)
    executions, objects = count_executions(engine), set(engine.list_keys())
    conflict = api.post("/jobs", json={**body, "count": 2}, headers={"Idempotency-Key": key})
    assert conflict.status_code == 409 and conflict.json()["error"] == "IdempotencyKeyReused"
    assert count_executions(engine) == executions and set(engine.list_keys()) == objects
