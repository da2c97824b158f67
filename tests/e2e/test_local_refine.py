"""Refining through the local API over HTTP (issue 16): pick one of four, then vary it, cut it out,
outpaint it and replace part of it; each answer is a manifest whose images download and name their
source; another caller cannot name the images."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.e2e.test_local_api import assert_images_download, poll_job
from tests.support import LocalServer


def _png(api: httpx.Client, image: dict[str, Any]) -> Image.Image:
    response = httpx.get(image["url"])
    assert response.status_code == 200
    picture = Image.open(io.BytesIO(response.content))
    picture.load()
    return picture


@pytest.fixture
def picked(api: httpx.Client) -> dict[str, Any]:
    response = api.post("/images", json={"prompt": "a red porsche", "count": 4, "model": "sd3-5-large"})
    assert response.status_code == 200, response.text
    return dict(response.json()["images"][2])


def test_pick_then_vary_cut_out_outpaint_and_replace(
    api: httpx.Client, local_server: LocalServer, picked: dict[str, Any]
) -> None:
    source = _png(api, picked)
    varied = api.post("/images", json={"source_image": picked["key"], "operation": "variation"})
    assert varied.status_code == 200, varied.text
    manifest = varied.json()
    assert manifest["succeeded"] == 4 and len({i["seed"] for i in manifest["images"]}) == 4
    assert {i["lineage"]["source_image"] for i in manifest["images"]} == {picked["key"]}
    assert_images_download(manifest, local_server.url)
    assert all(_png(api, i).size == source.size for i in manifest["images"])

    cut = api.post("/images", json={"source_image": picked["key"], "operation": "remove-background"})
    assert cut.status_code == 200, cut.text
    (image,) = cut.json()["images"]
    assert _png(api, image).mode == "RGBA" and image["cost_usd"] == 0.07

    wider = {"source_image": picked["key"], "operation": "outpaint", "left": 64, "right": 64, "count": 1}
    job = api.post("/jobs", json=wider)  # the jobs route takes the same request
    assert job.status_code == 202, job.text
    done = poll_job(api, job.json()["job_id"], timeout=120)
    assert done["status"] == "succeeded", done
    (image,) = done["manifest"]["images"]
    assert _png(api, image).size == (source.width + 128, source.height)

    replaced = api.post(
        "/images",
        json={
            "source_image": picked["key"],
            "operation": "inpaint",
            "mask_prompt": "the car",
            "prompt": "a horse",
            "count": 1,
        },
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["model"]["id"] == "stable-search-replace"
    (image,) = replaced.json()["images"]
    assert image["lineage"]["parameters"]["search_prompt"] == "the car"
