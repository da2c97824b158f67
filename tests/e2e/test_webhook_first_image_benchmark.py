"""Smoke run of ``benchmarks/webhook_first_image.py --quick`` in a child process, then checks of its
result file's structure and of what must hold whatever the machine's speed (no timing thresholds):
each run's first image webhook arrived before, or at worst with, its job's completion webhook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
pytestmark = pytest.mark.timeout(300)


def test_webhook_first_image_benchmark_writes_consistent_results(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "webhook_first_image.py"), "--quick", "--results-dir", str(tmp_path)],
        cwd=BENCH.parent,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "webhook_first_image.json").read_text())
    assert result["benchmark"] == "webhook_first_image" and result["meta"]["quick"] is True
    assert result["count"] == 4 and len(result["runs"]) == 3
    for run in result["runs"]:
        assert 0 < run["first_image"] <= run["completed"]
    assert 0 < result["first_image_share_of_completed"] <= 1
