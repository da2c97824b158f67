"""The ``imagegen`` client commands against the local server: ``submit --wait`` writes the images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imagegen.cli.main import main
from imagegen.standin.bedrock_server import FaultPlan
from tests.support import LocalServer


def test_submit_wait_writes_the_images(local_server: LocalServer, engine: Any, tmp_path: Path) -> None:
    """The installed command, in its own process, over HTTP."""
    engine.bedrock.faults = FaultPlan(latency_seconds=1.0)  # a job long enough to show its progress
    command = [sys.executable, "-m", "imagegen", "submit", "a red porsche", "--count", "2", "--seed", "7"]
    command += ["--api", local_server.url, "--wait", "--poll", "0.1", "--out", str(tmp_path)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "IMAGEGEN_API_KEY": "k"}
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)  # piped: the local manifest, as generate prints it
    assert printed["status"] == "SUCCEEDED"
    folder = tmp_path / "images" / printed["request_id"]
    assert printed == json.loads((folder / "manifest.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    files = sorted(folder.glob("*.png"))
    assert len(files) == 2 and [i["seed"] for i in manifest["images"]] == [7, 8]
    for image in manifest["images"]:
        assert "url" not in image and Path(image["file"]).is_file()
        assert Image.open(image["file"]).size == (image["width"], image["height"])
    assert "images [" in done.stderr and "2 of 2 images written" in done.stderr


def test_submit_wait_shows_each_image_as_it_arrives(
    local_server: LocalServer, engine: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Image 0 (seed 1) is made at once, image 1 two seconds later: a line for each, as they arrive."""
    engine.bedrock.faults = FaultPlan(latency_by_seed={2: 2.0})
    api = ["--api", local_server.url, "--out", str(tmp_path)]
    assert main(["submit", "a lighthouse", "--count", "2", "--seed", "1", "--wait", *api]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if " images [" in line]
    assert len(lines) == 2
    assert "images [#.] 1/2: #0 seed 1 SUCCEEDED http" in lines[0]
    assert "images [##] 2/2: #1 seed 2 SUCCEEDED http" in lines[1]


def test_status_wait_and_models_commands(
    local_server: LocalServer, engine: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = ["--api", local_server.url, "--quiet"]
    assert main(["submit", "a lighthouse", "--count", "1", "--idempotency-key", "cli-job-1", *api]) == 0
    submitted = json.loads(capsys.readouterr().out)
    assert submitted["job_id"] == "cli-job-1"
    assert main(["wait", "cli-job-1", "--out", str(tmp_path), "--poll", "0.1", *api]) == 0
    capsys.readouterr()
    assert len(list((tmp_path / "images" / "cli-job-1").glob("*.png"))) == 1
    assert main(["status", "cli-job-1", *api]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"
    assert main(["models", *api]) == 0
    assert json.loads(capsys.readouterr().out)["default_model"] == "stable-image-core"


def test_client_commands_report_api_errors(
    local_server: LocalServer, engine: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    api = ["--api", local_server.url, "--quiet"]
    assert main(["submit", "a cat", "--count", "0", *api]) == 3
    assert "400 InvalidRequest" in capsys.readouterr().err
    assert main(["status", "no-such-job", *api]) == 3
    assert "404 JobNotFound" in capsys.readouterr().err
    assert (
        main(["submit", "[[fault:block-prompt]] a cat", "--count", "1", "--wait", "--poll", "0.1", *api]) == 1
    )
    assert "AllImagesFiltered" in capsys.readouterr().err
    assert main(["models", "--api", "http://127.0.0.1:9", "--quiet"]) == 5
    assert "cannot reach the API" in capsys.readouterr().err


def test_commands_use_what_imagegen_configure_saved(
    local_server: LocalServer,
    engine: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No --api or key on the command line: the URL comes from the config file."""
    from imagegen.cli.configure import write_config

    for name in ("IMAGEGEN_API_URL", "IMAGEGEN_API_KEY", "IMAGEGEN_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IMAGEGEN_CONFIG_DIR", str(tmp_path / "config"))
    write_config({"api_url": local_server.url, "auth": "api-key"})
    assert main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["default_model"] == "stable-image-core"
    monkeypatch.setenv("IMAGEGEN_API_URL", "http://127.0.0.1:9")  # the environment wins over the file
    assert main(["models", "--json"]) == 5
