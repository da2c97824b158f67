"""``imagegen jobs list|cancel|retry`` and the client's ``generate`` (which follows a 202 to its job)
against the local server."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from imagegen.cli.client import ClientApiError, ImagegenClient
from imagegen.cli.main import main
from tests.support import LocalServer


def test_generate_follows_the_handoff_to_the_manifest(local_server: LocalServer, engine: Any) -> None:
    with ImagegenClient(local_server.url) as api:
        manifest = api.generate({"prompt": "slow [[fault:latency=1.5]]", "count": 1}, wait=0, poll=0.1)
        assert manifest["succeeded"] == 1 and manifest["cancelled"] is False
        with pytest.raises(ClientApiError) as refused:
            api.generate({"prompt": "x", "count": 0})
        assert refused.value.status == 400


def test_jobs_commands(local_server: LocalServer, engine: Any, capsys: pytest.CaptureFixture[str]) -> None:
    api = ["--api", local_server.url, "--quiet"]
    assert main(["submit", "long [[fault:latency=2]]", "--count", "2", *api]) == 0
    job_id = json.loads(capsys.readouterr().out)["job_id"]

    assert main(["jobs", "list", "--limit", "1", *api]) == 0
    page = json.loads(capsys.readouterr().out)
    assert page["jobs"][0]["job_id"] == job_id and page["next_token"]

    assert main(["jobs", "cancel", job_id, *api]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "cancelling"
    assert main(["jobs", "cancel", job_id, *api]) == 1  # a second cancel: 409
    assert "409 JobAlreadyCancelled" in capsys.readouterr().err

    deadline = time.monotonic() + 30
    while True:
        assert main(["status", job_id, *api]) == 0
        if json.loads(capsys.readouterr().out)["status"] == "cancelled":
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert main(["jobs", "list", "--status", "cancelled", "--all", *api]) == 0
    assert job_id in {j["job_id"] for j in json.loads(capsys.readouterr().out)["jobs"]}

    # Both images were in flight when the cancel came: stored and listed, nothing to retry.
    assert main(["jobs", "retry", job_id, *api]) == 1
    assert "409 NothingToRetry" in capsys.readouterr().err
    assert main(["jobs", "retry", "no-such-job", *api]) == 3
    assert "404 JobNotFound" in capsys.readouterr().err
