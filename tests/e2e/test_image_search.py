"""GET /images/search on the local server (``imagegen serve`` with two callers): each finds its own
images by prompt words, model and time, with links that fetch them, never the other's; bad searches
are 400 naming the field."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from image_pipeline.core.image_index import SEARCH_MAX_LIMIT

from imagegen.runtime.local_api import create_app
from tests.support import serve

KEYS = {"alice": "alice-secret-1", "bob": "bob-secret-2"}


@pytest.fixture(scope="module")
def server(offline_engine: Any) -> Iterator[str]:
    with serve(create_app(offline_engine, api_keys=KEYS)) as url:
        yield url


def client(url: str, who: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=120, headers={"x-api-key": KEYS[who]})


def test_each_caller_finds_only_its_own_images(server: str, engine: Any) -> None:
    word = f"zebra{uuid.uuid4().hex[:6]}"
    with client(server, "alice") as alice, client(server, "bob") as bob:
        made = alice.post("/images", json={"prompt": f"a {word} at dusk", "count": 2, "seed": 7})
        assert made.status_code == 200, made.text
        theirs = bob.post("/images", json={"prompt": f"a {word} at noon", "count": 1, "seed": 9})
        assert theirs.status_code == 200, theirs.text

        found = alice.get("/images/search", params={"q": word.upper()})
        assert found.status_code == 200, found.text
        body = found.json()
        assert body["count"] == 2 and body["next_token"] is None
        assert {i["key"] for i in body["images"]} == {i["key"] for i in made.json()["images"]}
        image = body["images"][0]
        assert image["prompt"] == f"a {word} at dusk" and image["model"] == "stable-image-core"
        picture = alice.get(image["url"])  # a fresh signed link
        assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")

        mine = bob.get("/images/search", params={"q": word}).json()
        assert [i["key"] for i in mine["images"]] == [theirs.json()["images"][0]["key"]]

        today = datetime.now(UTC).date()
        by_model = alice.get(
            "/images/search",
            params={"model": "stable-image-core", "since": today.isoformat(), "q": word, "limit": 1},
        ).json()
        assert by_model["count"] == 1 and by_model["next_token"]
        rest = alice.get(
            "/images/search",
            params={"model": "stable-image-core", "since": today.isoformat(), "q": word, "limit": 1,
                    "next_token": by_model["next_token"]},
        ).json()  # fmt: skip
        assert rest["count"] == 1 and rest["images"][0]["key"] != by_model["images"][0]["key"]
        # bob cannot page through alice's search with her token
        stolen = bob.get("/images/search", params={"q": word, "next_token": by_model["next_token"]})
        assert stolen.status_code == 400 and "next_token" in stolen.text
        yesterday = (today - timedelta(days=1)).isoformat()
        assert alice.get("/images/search", params={"q": word, "until": yesterday}).json()["count"] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"model": "dall-e-3"}, "model"),
        ({"since": "2026-11-30", "until": "2026-11-01"}, "until"),
        ({"q": "boat", "limit": str(SEARCH_MAX_LIMIT + 1)}, "limit"),
    ],
)
def test_bad_searches_are_400_naming_the_field(server: str, params: dict[str, str], field: str) -> None:
    with client(server, "alice") as alice:
        answer = alice.get("/images/search", params=params)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["error"] == "InvalidRequest" and field in body["message"]


def test_a_search_needs_a_key(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as anonymous:
        assert anonymous.get("/images/search", params={"q": "x"}).status_code == 401
