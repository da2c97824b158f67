"""Throttling, timeouts and 5xx: retried with backoff and full jitter within the ASL's bound, then
reported per image; a content filter is never retried and costs only its own image.

The session engine makes one botocore attempt per Lambda attempt, so every model call seen at the
local server is one attempt of the state machine's ``Retry``. The scenarios run as one concurrent
batch (their retry waits overlap); each test then checks its own executions.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from image_pipeline.core.clients import reset_clients

from imagegen.runtime.engine import ExecutionResult
from imagegen.standin.bedrock_server import FaultPlan
from tests.reliability.support import (
    audit,
    generate_image_retriers,
    manifest_of,
    retry_waits,
    stored_manifest,
)

SMALL = {"model": "stable-image-core"}
#: Seconds of slack on an upper bound of a wait, for a loaded machine (no lower-bound timing asserts).
SLACK = 1.5
BURSTS = 8


@dataclass
class Batch:
    """The batch's executions by scenario name, model calls per prompt, and its folder."""

    results: dict[str, ExecutionResult]
    calls: Counter[str]
    outcomes: dict[str, list[str]]
    folder: str
    tag: str

    def prompt(self, text: str) -> str:
        return f"{self.tag} {text}"


def _scenarios(tag: str, folder: str) -> dict[str, dict[str, Any]]:
    def request(text: str, count: int, seed: int, **extra: Any) -> dict[str, Any]:
        return {
            "prompt": f"{tag} {text}",
            "count": count,
            "seed": seed,
            "output_folder": folder,
            **SMALL,
            **extra,
        }

    scenarios = {f"burst-{i}": request(f"burst {i} [[fault:throttle=2]]", 1, 100 + i) for i in range(BURSTS)}
    scenarios.update(
        {
            "throttle-persistent": request("always throttled [[fault:throttle]]", 3, 200),
            "timeout-persistent": request("always timing out [[fault:timeout]]", 2, 300),
            "5xx-persistent": request("always failing [[fault:internal]]", 2, 400),
            "flaky": request("flaky [[fault:throttle=1]][[fault:timeout=1]][[fault:unavailable=1]]", 2, 500),
            "blocked-prompt-stability": request(
                "a forbidden thing [[fault:block-prompt]]",
                2,
                700,
                model="stable-image-core",
                width=None,
                height=None,
            ),
            "blocked-output-stability": request(
                "a lighthouse", 4, 800, model="stable-image-core", width=None, height=None
            ),
            "throttled-then-filtered": request("busy [[fault:throttle=1]]", 4, 900),
        }
    )
    for body in scenarios.values():
        for key in [k for k, v in body.items() if v is None]:
            del body[key]
    return scenarios


@pytest.fixture(scope="module")
def batch(offline_engine: Any) -> Iterator[Batch]:
    engine = offline_engine
    tag = f"retries-{uuid.uuid4().hex[:6]}"
    folder = f"rel/{tag}"
    engine.bedrock.faults = FaultPlan(block_output_seeds={802, 901})
    try:
        arns = {
            name: engine.start_execution(body, kind="jobs") for name, body in _scenarios(tag, folder).items()
        }
        results = {name: engine.wait(arn, timeout=300, poll=0.1) for name, arn in arns.items()}
    finally:
        engine.bedrock.faults = FaultPlan()
    entries = [r for r in engine.bedrock.recent_requests() if str(r["prompt"] or "").startswith(tag)]
    outcomes: dict[str, list[str]] = {}
    for entry in entries:
        outcomes.setdefault(f"{entry['prompt']}#{entry['seed']}", []).append(entry["outcome"])
    yield Batch(results, Counter(e["prompt"] for e in entries), outcomes, folder, tag)


def test_the_asl_bounds_retries_of_every_transient_model_error() -> None:
    retriers = generate_image_retriers()
    for error in ("ModelThrottled", "ModelTimeout", "ModelUnavailable"):
        retrier = retriers[error]
        assert 1 <= retrier["MaxAttempts"] <= 5, error
        assert retrier["JitterStrategy"] == "FULL", error
        assert retrier["BackoffRate"] >= 1 and retrier["MaxDelaySeconds"] <= 30, error
    for never in ("ModelRejected", "ModelAccessDenied", "ModelResponseInvalid", "StorageError", "States.ALL"):
        assert never not in retriers, f"{never} must not be retried per image"


def test_throttle_bursts_are_retried_with_jittered_backoff_within_the_bound(
    batch: Batch, offline_engine: Any
) -> None:
    """Eight images, each throttled twice then served: every image succeeds after exactly 2 retries;
    each wait is within the ASL's bound for its attempt, and the waits vary (full jitter)."""
    retrier = generate_image_retriers()["ModelThrottled"]
    results = [batch.results[f"burst-{i}"] for i in range(BURSTS)]
    assert [r.status for r in results] == ["SUCCEEDED"] * BURSTS, [r.message for r in results]
    assert [batch.calls[batch.prompt(f"burst {i}")] for i in range(BURSTS)] == [3] * BURSTS
    waits = [retry_waits(offline_engine, r.arn) for r in results]
    assert all(len(w) == 2 for w in waits), waits
    for attempt in (0, 1):
        ceiling = min(
            retrier["IntervalSeconds"] * retrier["BackoffRate"] ** attempt, retrier["MaxDelaySeconds"]
        )
        observed = [w[attempt] for w in waits]
        assert max(observed) <= ceiling + SLACK, (attempt, observed)
        assert len({round(w, 2) for w in observed}) > 1, observed  # without jitter: all the same
    # Uniform in [0, 2 s]: P(all eight first waits >= 1.5 s) = 0.25**8. A fixed 2 s wait fails this.
    assert min(w[0] for w in waits) < 0.75 * retrier["IntervalSeconds"], waits
    assert audit(offline_engine, batch.folder).ok


def test_persistent_throttling_stops_at_the_bound_and_is_reported_per_image(
    batch: Batch, offline_engine: Any
) -> None:
    bound = 1 + generate_image_retriers()["ModelThrottled"]["MaxAttempts"]
    result = batch.results["throttle-persistent"]
    assert (result.status, result.error) == ("FAILED", "ImagesThrottled")
    assert batch.calls[batch.prompt("always throttled")] == 3 * bound
    images = stored_manifest(offline_engine, result)["images"]
    assert [(i["status"], i["reason_code"], i["key"]) for i in images] == [("FAILED", "THROTTLED", None)] * 3
    assert all("ThrottlingException" in i["message"] for i in images)


@pytest.mark.parametrize(
    ("scenario", "text", "error", "reason"),
    [
        ("timeout-persistent", "always timing out", "ModelTimeout", "MODEL_TIMEOUT"),
        ("5xx-persistent", "always failing", "ModelUnavailable", "MODEL_UNAVAILABLE"),
    ],
)
def test_persistent_timeouts_and_5xx_stop_at_the_bound(
    batch: Batch, offline_engine: Any, scenario: str, text: str, error: str, reason: str
) -> None:
    bound = 1 + generate_image_retriers()[error]["MaxAttempts"]
    result = batch.results[scenario]
    assert (result.status, result.error) == ("FAILED", "ImagesFailed")
    assert batch.calls[batch.prompt(text)] == 2 * bound
    images = stored_manifest(offline_engine, result)["images"]
    assert [(i["status"], i["reason_code"]) for i in images] == [("FAILED", reason)] * 2


def test_one_of_each_transient_error_then_success_keeps_every_image(batch: Batch) -> None:
    result = batch.results["flaky"]
    assert result.status == "SUCCEEDED", result.message
    assert manifest_of(result)["succeeded"] == 2
    assert batch.calls[batch.prompt("flaky")] == 2 * 4  # each retrier used once per image


@pytest.mark.parametrize("family", ["stability"])
def test_blocked_prompt_is_not_retried_and_has_its_reason(
    batch: Batch, offline_engine: Any, family: str
) -> None:
    """Stability answers a blocked prompt with a finish reason. (Titan and Nova Canvas, which answer
    ValidationException, are past their end of life and refused offline as deployed; tests/unit checks
    their adapters.)"""
    result = batch.results[f"blocked-prompt-{family}"]
    assert (result.status, result.error) == ("FAILED", "AllImagesFiltered")
    images = stored_manifest(offline_engine, result)["images"]
    assert [(i["status"], i["reason_code"], i["key"]) for i in images] == [
        ("FILTERED", "CONTENT_FILTERED_INPUT", None)
    ] * 2
    prompt = batch.prompt("a forbidden thing")
    assert batch.outcomes[f"{prompt}#{images[0]['seed']}"] in (["filtered-prompt"], ["ValidationException"])


def test_blocked_prompts_cost_one_call_per_image(batch: Batch) -> None:
    assert batch.calls[batch.prompt("a forbidden thing")] == 2


def test_blocked_output_costs_only_its_image(batch: Batch) -> None:
    manifest = batch.results["blocked-output-stability"].output
    assert manifest is not None
    assert (manifest["status"], manifest["succeeded"], manifest["filtered"]) == ("PARTIAL", 3, 1)
    blocked = manifest["images"][2]
    assert (blocked["status"], blocked["reason_code"], blocked["seed"], blocked["key"]) == (
        "FILTERED",
        "CONTENT_FILTERED_OUTPUT",
        802,
        None,
    )
    assert batch.calls[batch.prompt("a lighthouse")] == 4


def test_throttled_then_filtered_image_is_filtered_once_and_the_others_kept(batch: Batch) -> None:
    """A throttle on every image, and one image's output blocked: the throttles are retried, the
    filter is not, and the three other images are kept."""
    result = batch.results["throttled-then-filtered"]
    assert result.status == "SUCCEEDED", result.message
    assert [(i["status"], i["reason_code"]) for i in manifest_of(result)["images"]] == [
        ("SUCCEEDED", None),
        ("FILTERED", "CONTENT_FILTERED_OUTPUT"),
        ("SUCCEEDED", None),
        ("SUCCEEDED", None),
    ]
    assert batch.calls[batch.prompt("busy")] == 4 * 2
    assert batch.outcomes[f"{batch.prompt('busy')}#901"] == ["ThrottlingException", "filtered-output"]


def test_nothing_lost_in_the_batch(batch: Batch, offline_engine: Any) -> None:
    returned = [r.output for r in batch.results.values() if r.output is not None]
    report = audit(offline_engine, batch.folder, returned)
    assert report.ok, report
    assert report.manifests == len(batch.results)
    assert report.reason_codes == {
        "THROTTLED": 3,
        "MODEL_TIMEOUT": 2,
        "MODEL_UNAVAILABLE": 2,
        "CONTENT_FILTERED_INPUT": 2,
        "CONTENT_FILTERED_OUTPUT": 2,
    }


def test_a_read_timeout_is_a_model_timeout_retried_within_the_bound(
    engine: Any, folder: str, calls: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real socket read timeout (the server answers after the client gave up), not an error code."""
    monkeypatch.setenv("BEDROCK_READ_TIMEOUT_SECONDS", "1")
    reset_clients()
    try:
        bound = 1 + generate_image_retriers()["ModelTimeout"]["MaxAttempts"]
        result = engine.run(
            {"prompt": "slow [[fault:latency=2]]", "count": 1, "output_folder": folder, **SMALL}
        )
    finally:
        monkeypatch.delenv("BEDROCK_READ_TIMEOUT_SECONDS")
        reset_clients()
    assert (result.status, result.error) == ("FAILED", "ImagesFailed")
    assert calls() == bound
    image = stored_manifest(engine, result)["images"][0]
    assert (image["reason_code"], image["key"]) == ("MODEL_TIMEOUT", None)
    assert "timeout" in image["message"].lower()
    assert audit(engine, folder).ok
