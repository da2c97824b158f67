"""Smoke run of ``benchmarks/simulation.py``: three simulated minutes with every quota at a fifth, so
branches contend. Checks the report's invariants, never its timings: every image is accounted for; with
admission control (the queue of task tokens) no call is refused, nothing is throttled, calls in flight
stay within each quota, every branch is woken by its token, waiting costs no state transition, and at
the end no slot is counted, no lease held and no ticket left; without it the same traffic is throttled;
percentiles are ordered and the cost adds up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("simulation")
    done = subprocess.run(
        [
            sys.executable,
            "simulation.py",
            "--minutes",
            "3",
            "--load",
            "0.2",
            "--quota-multiplier",
            "0.2",
            "--results-dir",
            str(out),
        ],
        cwd=ROOT / "benchmarks",
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads((out / "simulation.json").read_text())
    return result


def _accounted(run: dict[str, Any]) -> None:
    assert run["requests"] > 0
    assert sum(run["images"].values()) + run["images_of_refused_requests"] == run["images_requested"]
    assert run["images_generated"] + run["images_throttled"] + run["images_failed_other"] == sum(
        run["images"].values()
    )
    for key in ("first_image_seconds", "last_image_seconds"):
        assert run[key]["p50"] <= run[key]["p99"] <= run[key]["max"]
    assert run["first_image_seconds"]["p50"] <= run["last_image_seconds"]["p50"]
    cost = run["cost"]
    assert cost["total_per_1000_images"] > cost["workflow_per_1000_images"] > 0
    assert sum(cost["per_1000_images_generated"].values()) == pytest.approx(
        cost["total_per_1000_images"], abs=0.01
    )


def test_same_traffic_in_both_variants(report: dict[str, Any]) -> None:
    runs = report["runs"]
    assert set(runs) == {"smoke_with_admission", "smoke_without_admission"}
    with_, without = runs["smoke_with_admission"], runs["smoke_without_admission"]
    assert with_["requests"] == without["requests"]
    assert with_["images_requested"] == without["images_requested"]
    _accounted(with_)
    _accounted(without)


def test_admission_keeps_every_model_within_its_quota(report: dict[str, Any]) -> None:
    run = report["runs"]["smoke_with_admission"]
    assert run["images_throttled"] == 0
    assert run["slot_count_above_quota_samples"] == 0
    waited = 0
    for name, model in run["per_model"].items():
        assert model["calls_refused"] == 0, name
        assert model["calls_in_flight_at_most"] <= model["quota_in_flight"], name
        assert model["calls"] == model["images_generated"], name  # one call per image, none refused
        waited += model["waiting_branches_at_most"]
    assert waited > 0  # the quotas at a fifth made branches wait: the semaphore was exercised
    empty = {"in_use": 0, "leases": 0, "tickets": 0}
    assert all(left == empty for left in run["slots_left_at_end"].values())
    # no lease leaked: none left when the last execution ended (not even one for the keeper to reclaim)
    assert all(left == empty for left in run["admission"]["left_when_the_last_execution_ended"].values())


def test_branches_wait_on_their_tokens_without_transitions(report: dict[str, Any]) -> None:
    run = report["runs"]["smoke_with_admission"]
    sfn = run["step_functions"]
    images = sum(run["images"].values())
    assert run["images"] == {"SUCCEEDED": images}
    assert run["executions_timed_out"] == 0
    # every branch's AcquireSlot ended by SendTaskSuccess on its token: at least one per image
    assert sfn["send_task_success_calls"] - sfn["send_task_success_dead_tokens"] >= images
    # five states a request (ValidateRequest, the Map, BuildManifest, Publish, Done) and three an image
    # (AcquireSlot, GenerateImage, ReleaseSlot), plus one per AcquireSlot asked again after its timeout:
    # a branch waiting for its token costs none
    assert sfn["state_transitions"] == 5 * run["requests"] + 3 * images + sfn["acquire_slot_timeouts"]
    assert run["lambda"]["throttled_invocations"] == 0
    assert run["admission"]["keeper_rounds"] >= 3  # one a simulated minute


def test_without_admission_the_same_traffic_is_refused(report: dict[str, Any]) -> None:
    run = report["runs"]["smoke_without_admission"]
    assert sum(m["calls_refused"] for m in run["per_model"].values()) > 0
    assert run["step_functions"]["no_slot_answers"] == 0
    assert run["step_functions"]["send_task_success_calls"] == 0
    assert run["admission"] is None


def test_report_names_its_sources(report: dict[str, Any]) -> None:
    assert report["algorithm"].startswith("image_pipeline.core.admission.Semaphore")
    calibration = report["calibration"]
    for path in ("acquire_take", "acquire_queue", "release_hand_off", "release_give_back"):
        assert calibration[f"admission_{path}_seconds"] > 0, path
    assert "create_admission_table" in calibration["source"]
    assert "fanout.json" in calibration["source"]
    for name, limit in report["scenario"]["limits"].items():
        assert limit["source"], name
    assert report["scenario"]["read_on"] == "2026-11-30"
