"""``--quota MODEL=N`` on ``imagegen generate`` (the same option as ``serve`` and ``batch``): the
stand-in answers at most N calls of the model at once, admission control keeps the branches within
it, and a quota that is not a whole number of at least 1 is refused before anything runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def generate(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "imagegen", "generate", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def test_a_quota_of_one_makes_every_image_in_turn(tmp_path: Path) -> None:
    done = generate(
        "a quiet harbour",
        "-n",
        "3",
        "--quota",
        "stable-image-core=1",
        "--latency",
        "0.1",
        "--out",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["succeeded"] == 3 and manifest["failed"] == 0


@pytest.mark.parametrize(
    ("quota", "words"),
    [
        ("stable-image-core=0", "a quota of 0 would never let a call through"),
        ("stable-image-core=-1", "a quota of -1 would never let a call through"),
        ("stable-image-core=lots", "not 'lots'"),
        ("stable-image-core", "give MODEL=N"),
        ("dall-e-3=4", "unknown model"),
    ],
)
def test_a_bad_quota_is_refused_at_start_up(tmp_path: Path, quota: str, words: str) -> None:
    done = generate("x", "--quota", quota, "--out", str(tmp_path))
    assert done.returncode == 2
    assert words in done.stderr and "imagegen generate: --quota" in done.stderr
    assert not (tmp_path / "images").exists()


@pytest.mark.parametrize(
    ("command", "quota", "words"),
    [
        ("serve", "stable-image-core=0", "a quota of 0 would never let a call through"),
        ("serve", "stable-image-core=-2", "a quota of -2 would never let a call through"),
        ("serve", "stable-image-core=four", "not 'four'"),
        ("batch", "stable-image-core=0", "a quota of 0 would never let a call through"),
        ("batch", "stable-image-core=2.5", "not '2.5'"),
    ],
)
def test_serve_and_batch_refuse_a_bad_quota_before_starting(
    tmp_path: Path, command: str, quota: str, words: str
) -> None:
    """The same refusal on every entry point: exit 2, the option and the value named, nothing run."""
    args = ["--quota", quota]
    if command == "batch":
        lines = tmp_path / "requests.jsonl"
        lines.write_text('{"prompt": "a quiet harbour"}\n')
        args = [str(lines), "--out", str(tmp_path / "out"), *args]
    done = subprocess.run(
        [sys.executable, "-m", "imagegen", command, *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert f"imagegen {command}: --quota" in done.stderr and words in done.stderr
    assert not (tmp_path / "out").exists()
