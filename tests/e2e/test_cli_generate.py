"""``imagegen generate``, the README's first command, as a user runs it: its own process, its own
offline engine (one per process, so not the test session's), images and manifest.json on disk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

PNG = b"\x89PNG\r\n\x1a\n"


def generate(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "imagegen", "generate", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def test_generate_writes_the_images_and_a_local_manifest(tmp_path: Path) -> None:
    done = generate("a red porsche", "--count", "2", "--seed", "7", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)  # stdout is the manifest; progress goes to stderr
    # The request's own folder (its S3 prefix without the console's namespace), as the README says.
    folder = tmp_path / "images" / printed["request_id"]
    assert printed["prefix"] == f"{printed['caller_namespace']}/images/{printed['request_id']}/"
    stored = json.loads((folder / "manifest.json").read_text())
    assert stored["status"] == "SUCCEEDED" and [i["seed"] for i in stored["images"]] == [7, 8]
    assert "urls_expire_at" not in stored
    for image in stored["images"]:
        assert "url" not in image and "download_url" not in image  # they expire; the file stays
        path = Path(image["file"])
        assert path.parent == folder and path.name == image["key"].rsplit("/", 1)[-1]
        assert path.read_bytes().startswith(PNG) and path.stat().st_size == image["size_bytes"]
        assert Image.open(path).size == (image["width"], image["height"])
    assert sorted(folder.glob("*.png")) == sorted(Path(i["file"]) for i in stored["images"])
    assert "2 of 2 images written" in done.stderr


def test_generate_refuses_a_bad_request_and_writes_nothing(tmp_path: Path) -> None:
    done = generate("a cat", "--count", "0", "--out", str(tmp_path))
    assert done.returncode == 3  # an invalid request (2 is a usage error)
    assert "InvalidRequest" in done.stderr and "count" in done.stderr
    assert list(tmp_path.iterdir()) == []


WEBHOOK_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"


def test_generate_delivers_its_webhooks_as_submit_does(tmp_path: Path) -> None:
    """``generate --webhook`` sends the request's webhook as ``submit --webhook`` does (through
    ``imagegen serve --webhook-secret``): each image and the end, signed, verified with the
    ``standardwebhooks`` package; the command ends once they are delivered."""
    from standardwebhooks import Webhook

    from tests.webhook_receiver import webhook_receiver

    with webhook_receiver() as receiver:
        done = generate(
            "a lighthouse",
            *("--count", "2", "--seed", "3", "--out", str(tmp_path), "--webhook", receiver.url),
            *("--webhook-event", "image", "--webhook-event", "completed", "--webhook-secret", WEBHOOK_SECRET),
        )
        bodies = [Webhook(WEBHOOK_SECRET).verify(r.body, r.headers) for r in receiver.received]
    assert done.returncode == 0, done.stderr
    assert sorted(b["type"] for b in bodies) == ["job.completed", "job.image", "job.image"]
    assert sorted(b["image"]["seed"] for b in bodies if b["type"] == "job.image") == [3, 4]
    (completed,) = [b for b in bodies if b["type"] == "job.completed"]
    assert completed["job"]["manifest"]["request_id"] == json.loads(done.stdout)["request_id"]
    assert "webhook: 3 of 3 deliveries made" in done.stderr


def test_generate_refuses_a_webhook_without_its_secret_or_off_this_machine(tmp_path: Path) -> None:
    missing = generate("a cat", "--out", str(tmp_path), "--webhook", "http://127.0.0.1:9/hook")
    assert missing.returncode == 2 and "--webhook-secret" in missing.stderr
    elsewhere = generate(
        "a cat",
        "--out",
        str(tmp_path),
        "--webhook",
        "https://example.com/hook",
        "--webhook-secret",
        WEBHOOK_SECRET,
    )
    assert elsewhere.returncode == 3 and "webhook" in elsewhere.stderr  # as the API's 400
    assert list(tmp_path.iterdir()) == []
