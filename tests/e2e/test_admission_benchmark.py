"""Smoke run of ``benchmarks/admission.py`` with tiny numbers in a child process: the three variants ran,
every image is accounted for, with admission control the stand-in refused nothing and no image was
throttled, every branch was woken once, and the slot was handed on where the variant says (never by
GenerateImage when its hand-off is off; as shipped, GenerateImage tried it for every image). No timing
thresholds (the machine is shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


def test_admission_benchmark_runs_the_three_variants(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "admission.py",
            "--jobs",
            "3",
            "--images",
            "2",
            "--quota",
            "2",
            "--latency",
            "0.1",
            "--results-dir",
            str(tmp_path),
        ],
        cwd=ROOT / "benchmarks",
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "admission.json").read_text())
    assert set(result["variants"]) == {
        "without_admission",
        "with_admission_slot_held_until_release_slot",
        "with_admission",
    }
    for variant in result["variants"].values():
        assert (
            variant["images_requested"]
            == 6
            == variant["images_generated"] + variant["images_throttled"] + variant["images_failed_other"]
        )
        assert variant["manifests"] == 3
        assert variant["trace"]["calls_accepted"] == variant["bedrock_calls"] - variant["bedrock_refused"]
    for name in ("with_admission", "with_admission_slot_held_until_release_slot"):
        with_ = result["variants"][name]
        assert with_["images_throttled"] == 0 and with_["bedrock_refused"] == 0, name
        assert with_["bedrock_calls"] == 6, name
        assert max(with_["max_in_flight"].values()) <= 2, name
        wakes = with_["trace"]["wakes_by_sender"]
        assert sum(wakes.values()) == 6, (name, wakes)  # each branch woken once, granted
        steps = with_["trace"]["hand_off_steps"]
        taken_free = ("acquire_took_a_free_slot", "acquire_filled_a_free_slot", "keeper_sweep")
        handed_on = 6 - sum(wakes.get(kind, 0) for kind in taken_free)
        assert steps["slot_idle_call_end_to_next_call"]["n"] == handed_on, (name, wakes, steps)
    held = result["variants"]["with_admission_slot_held_until_release_slot"]
    shipped = result["variants"]["with_admission"]
    # held: GenerateImage never hands on (ReleaseSlot does); as shipped every image's GenerateImage tries
    # (one that finds no ticket gives the slot back, and ReleaseSlot's fill may then hand it on)
    assert "imagegen-generate-image:after_call" not in held["trace"]["wakes_by_sender"]
    assert held["trace"]["early_hand_offs_begun"] == 0
    assert shipped["trace"]["early_hand_offs_begun"] == 6
    assert shipped["slot_given_back_after_the_model_call"] is True
    assert held["slot_given_back_after_the_model_call"] is False
    assert result["targets"]["throttled_images_with_admission"]["measured"] == 0
