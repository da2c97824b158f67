"""Load offline: many concurrent executions under the fault mix of ``tools/reliability_run.py``,
nothing lost, every outcome as its scenario says, threads and memory bounded.

The CI size is one request per scenario (14 concurrent executions of 4 images); the full run
(``python -m tools.reliability_run``: 200 x 4, plus every bad input) is run by hand and its figures
are in ``docs/reliability-results.json``. It stays small because every execution here also runs the
fault mix's retries and backoff, and the suite shares two cores with the rest of CI.
"""

from __future__ import annotations

from typing import Any

import pytest

from tools.reliability_run import SCENARIOS, RunConfig, run

REQUESTS = len(SCENARIOS)
IMAGES = 4
#: Threads one execution holds at once in moto's interpreter, as counted by name at the peak of a
#: 200-execution run (``python -m tools.reliability_run``): its ExecutionWorker; per Map iteration an
#: IterationWorker, the EvalComponent thread it starts and the thread that evaluates a Task under
#: its timeout; and the Map state's own EvalComponent and timeout threads (15 for 4 images).
THREADS_PER_EXECUTION = 1 + 3 * IMAGES + 2
#: The local Bedrock server holds one thread per open connection: the 50 the client pools, and,
#: when more calls are in flight than the pool holds, short-lived ones beyond it (43 at the peak
#: of 200 executions). One per execution allows for those; 10 for the rest (samplers, boto3).
SERVER_THREADS_PER_EXECUTION = 1
SERVER_THREADS = 50 + 10


@pytest.fixture(scope="module")
def figures(offline_engine: Any) -> dict[str, Any]:
    config = RunConfig(
        requests=REQUESTS,
        images=IMAGES,
        throttle_burst=8,
        invalid_api=False,
        invalid_console=False,
        timeout=300,
    )
    return run(config, engine=offline_engine)


@pytest.mark.reliability_load
def test_every_guarantee_holds_under_the_fault_mix(figures: dict[str, Any]) -> None:
    assert figures["checks"] == dict.fromkeys(figures["checks"], True), figures["unexpected_examples"]
    assert figures["requests"] == REQUESTS and figures["images_requested"] == REQUESTS * IMAGES


@pytest.mark.reliability_load
def test_every_scenario_ran_and_every_reason_code_appeared(figures: dict[str, Any]) -> None:
    assert set(figures["scenarios"]) == {s.name for s in SCENARIOS}
    assert set(figures["reason_codes"]) == {
        "THROTTLED",
        "MODEL_TIMEOUT",
        "MODEL_UNAVAILABLE",
        "CONTENT_FILTERED_INPUT",
        "CONTENT_FILTERED_OUTPUT",
        "STORAGE_ERROR",
    }
    assert figures["audit"]["images_reported"] == REQUESTS * IMAGES
    assert figures["s3_faults"]["by_operation"]["PutObject"]["injected"] > 0


@pytest.mark.reliability_load
def test_retries_are_observed_and_bounded(figures: dict[str, Any]) -> None:
    calls = figures["model_calls"]
    assert calls["history_complete"]
    assert calls["retries_observed"] > 0
    assert calls["max_calls_per_image"] <= calls["bound_calls_per_image"]
    bound = figures["retry_bound"]
    assert calls["calls_per_persistently_throttled_image"]["max"] <= bound["calls_per_image"]


@pytest.mark.reliability_load
def test_threads_and_memory_stay_bounded(figures: dict[str, Any]) -> None:
    threads = figures["threads"]
    assert threads["peak"] <= (
        threads["before"] + REQUESTS * (THREADS_PER_EXECUTION + SERVER_THREADS_PER_EXECUTION) + SERVER_THREADS
    ), threads
    assert threads["after"] <= threads["before"] + SERVER_THREADS, threads
    rss = figures["rss_mb"]
    if rss["before"] is not None:
        assert rss["peak"] - rss["before"] < 500, rss
