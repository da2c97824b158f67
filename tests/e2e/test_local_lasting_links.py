"""Lasting links on the local server (``imagegen serve``), over real HTTP: a link minted in a manifest
(``POST /images``, ``GET /jobs/{id}``) is fetched without an API key; its lifetime is the server's
``link_lifetime_seconds`` (the ``/files`` links' too); with the server's clock moved past it the link
is refused (403 ``LinkExpired``), a changed token is 403 ``InvalidLink``, an image no longer stored
404 ``NotFound``, each ``{error, message}``; links are minted only for the caller's own images."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from imagegen.runtime.local_api import create_app
from tests.support import serve

DAY = 24 * 3600
LIFETIME = 2 * DAY
KEYS = {"alice": "alice-secret-1", "bob": "bob-secret-22"}


class Clock:
    """The server's time, moved by the test."""

    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server(engine: Any) -> Iterator[tuple[str, Clock]]:
    clock = Clock()
    app = create_app(engine, api_keys=KEYS, link_lifetime_seconds=LIFETIME, clock=clock)
    with serve(app) as url:
        yield url, clock


def _client(url: str, key: str | None = None) -> httpx.Client:
    headers = {"x-api-key": KEYS[key]} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=120, follow_redirects=False)


def _generate(url: str, key: str = "alice") -> dict[str, Any]:
    with _client(url, key) as client:
        answer = client.post("/images", json={"prompt": "a lighthouse at dusk", "count": 2, "seed": 11})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_minted_link_is_fetched_without_a_key_for_as_long_as_it_lasts(server: tuple[str, Clock]) -> None:
    url, clock = server
    manifest = _generate(url)
    image = manifest["images"][0]
    assert image["link"].startswith(f"{url}/links/")
    assert image["download_link"] == f"{image['link']}?download=1"
    # the /files links the page reads last as long (the same setting)
    expires = int(parse_qs(urlsplit(image["url"]).query)["expires"][0])
    assert abs(expires - (clock.now + LIFETIME)) <= 1
    with _client(url) as anyone:  # no API key: the signature authorizes
        followed = anyone.get(image["link"])
        assert followed.status_code == 302 and followed.headers["cache-control"] == "no-store"
        png = anyone.get(followed.headers["location"])
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        assert png.content == anyone.get(image["url"]).content
        saved = anyone.get(anyone.get(image["download_link"]).headers["location"])
        assert saved.headers["content-disposition"].startswith("attachment;")

        clock.now += LIFETIME - 60  # still valid a minute before its end
        assert anyone.get(image["link"]).status_code == 302
        clock.now += 120  # past it
        expired = anyone.get(image["link"])
        assert expired.status_code == 403
        assert expired.json()["error"] == "LinkExpired" and expired.json()["message"]
        assert anyone.get(image["url"]).status_code == 403  # the /files link ended with it


def test_get_job_carries_lasting_links_for_the_callers_images(server: tuple[str, Clock]) -> None:
    url, _ = server
    with _client(url, "alice") as alice:
        accepted = alice.post("/jobs", json={"prompt": "a red porsche", "count": 1})
        assert accepted.status_code == 202
        job_id = accepted.json()["job_id"]
        for _ in range(600):
            job = alice.get(f"/jobs/{job_id}").json()
            if job.get("manifest"):
                break
            import time

            time.sleep(0.05)
    (image,) = job["manifest"]["images"]
    assert image["link"].startswith(f"{url}/links/") and "links_expire_at" in job["manifest"]
    with _client(url, "bob") as bob:  # another caller: not their job, no links minted for them
        assert bob.get(f"/jobs/{job_id}").status_code == 404
        assert bob.get(image["link"]).status_code == 302  # the holder of a link may follow it


def test_changed_tokens_and_images_gone_are_refused(server: tuple[str, Clock], engine: Any) -> None:
    url, _ = server
    image = _generate(url)["images"][1]
    token = image["link"].rsplit("/", 1)[1]
    payload, signature = token.split(".")
    with _client(url) as anyone:
        for bad in (f"{payload}.{signature[::-1]}", f"{payload[:-2]}.{signature}", payload, "x"):
            refused = anyone.get(f"/links/{bad}")
            assert refused.status_code == 403, bad
            assert refused.json()["error"] == "InvalidLink" and refused.json()["message"]
        engine.s3.delete_object(Bucket=engine.config.bucket, Key=image["key"])
        gone = anyone.get(image["link"])
        assert gone.status_code == 404 and gone.json() == {
            "error": "NotFound",
            "message": "this image is no longer stored",
        }


def test_the_stored_manifest_carries_lasting_links_that_this_server_follows(
    server: tuple[str, Clock], engine: Any
) -> None:
    """manifest.json in the bucket (written by the manifest step, not by the API) has a lasting link per
    stored image, to this server, signed with the engine's link secret: it is followed without a key."""
    import json

    url, _ = server
    engine.set_links_base_url(url)
    try:
        manifest = _generate(url)
    finally:
        engine.set_links_base_url(None)
    stored = json.loads(
        engine.s3.get_object(Bucket=manifest["bucket"], Key=manifest["manifest_key"])["Body"].read()
    )
    links = [image["link"] for image in stored["images"]]
    assert len(links) == 2 and all(link.startswith(f"{url}/links/") for link in links)
    assert stored["links_expire_at"]
    assert all(i["download_link"] == f"{i['link']}?download=1" for i in stored["images"])
    with _client(url) as anyone:
        followed = anyone.get(links[0])
        assert followed.status_code == 302
        assert anyone.get(followed.headers["location"]).content.startswith(b"\x89PNG")
