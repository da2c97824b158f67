"""A model past its end of life, offline as a user meets it: ``imagegen generate`` judges the model as the
deployed workflow does (the same facts file, the offline account's Region us-west-2), exits non-zero with
what to use instead and writes nothing; the local API answers 400 before starting a job, and
``GET /models`` says which models are available here today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any


def generate(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "imagegen", "generate", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def test_a_retired_model_is_refused_with_its_end_of_life_and_nothing_is_written(tmp_path: Path) -> None:
    done = generate("a lighthouse", "--model", "titan-image-v2", "--count", "1", "--out", str(tmp_path))
    assert done.returncode == 3, done.stderr
    assert "InvalidRequest" in done.stderr
    assert (
        "titan-image-v2 (amazon.titan-image-generator-v2:0) reached its end of life on 2026-06-30"
        in done.stderr
    )
    assert "use sd3-5-large, stable-image-core or stable-image-ultra instead" in done.stderr
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_a_retired_model_named_by_its_bedrock_id_is_refused_too(tmp_path: Path) -> None:
    done = generate("a lighthouse", "--model", "amazon.nova-canvas-v1:0", "--out", str(tmp_path))
    assert done.returncode == 3, done.stderr
    assert "nova-canvas (amazon.nova-canvas-v1:0) reached its end of life on 2026-09-30" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_local_api_answers_400_for_a_retired_model_before_any_job(api: Any, local_server: Any) -> None:
    before = local_server.engine.count_executions()
    answer = api.post("/jobs", json={"prompt": "a lighthouse", "model": "nova-canvas"})
    assert answer.status_code == 400, answer.text
    [detail] = [d for d in answer.json()["details"] if d["field"] == "model"]
    assert "reached its end of life on 2026-09-30" in detail["message"]
    assert local_server.engine.count_executions() == before


def test_get_models_says_what_each_model_is_worth_here_today(api: Any) -> None:
    catalog = api.get("/models").json()
    assert catalog["region"] == "us-west-2"
    by_id = {m["id"]: m for m in catalog["models"]}
    assert by_id["stable-image-core"]["available"] and by_id["stable-image-core"]["lifecycle"] == "active"
    assert not by_id["titan-image-v2"]["available"] and by_id["titan-image-v2"]["lifecycle"] == "eol"
