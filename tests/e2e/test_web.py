"""The web page in a real browser: Debian's Chromium, driven by Playwright, against the local API.

Needs ``pip install playwright`` (the wheel carries its driver; never ``playwright install``) and
``apt-get install chromium``; the module is skipped when either is missing.

The docs' picture of the page (``docs/img/web.png``) is taken by the happy-path test only when
``IMAGEGEN_WEB_SCREENSHOT`` names a file: ``make docs-screenshot`` does, ``make test`` writes nothing.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from imagegen.standin.faults import FaultPlan

try:
    from playwright.sync_api import Browser, Page, Request, Route, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip(
        "playwright is not installed: pip install playwright (its wheel has the driver; no browser download)",
        allow_module_level=True,
    )

CHROMIUM = Path(os.environ.get("IMAGEGEN_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.is_file():  # pragma: no cover - depends on the machine
    pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium", allow_module_level=True)

#: axe-core, from the npm registry at the version tests/e2e/package-lock.json pins (``npm ci --prefix
#: tests/e2e``, which .ci/run does); the accessibility tests load it into the page.
AXE = Path(__file__).with_name("node_modules") / "axe-core" / "axe.min.js"
#: The two windows the page is checked in: a phone (iPhone 12-15 class) and a laptop.
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The file the happy-path test saves the page to (``make docs-screenshot``); unset, it saves nothing.
SCREENSHOT_TO = os.environ.get("IMAGEGEN_WEB_SCREENSHOT")
TIMEOUT_MS = 30_000
PROMPT = "a lighthouse on a cliff at dawn, oil painting"
SELECTED = re.compile(r"\bis-selected\b")

expect.set_options(timeout=TIMEOUT_MS)


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def server(local_server: Any, engine: Any) -> Any:
    """The local API serving ``web/`` (``url``, ``engine``); ``engine`` resets the faults around each test."""
    return local_server


class PageWatch:
    """A page, with what it sent to ``POST /jobs`` and any script errors it raised."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.job_posts: list[Request] = []
        self.errors: list[str] = []
        page.on("request", self._on_request)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)

    def _on_request(self, request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/jobs"):
            self.job_posts.append(request)


@pytest.fixture
def watch(browser: Browser, server: Any) -> Iterator[PageWatch]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    watched = PageWatch(page)
    yield watched
    context.close()


def open_page(watch: PageWatch, server: Any, *, model: str = "stable-image-core") -> Page:
    page = watch.page
    page.goto(server.url + "/")
    expect(page.locator(f"#model option[value='{model}']")).to_be_attached()
    page.select_option("#model", model)
    return page


def fill_request(page: Page, prompt: str, *, seed: int | None = None, count: int | None = None) -> None:
    page.fill("#prompt", prompt)
    if count is not None:
        page.fill("#count", str(count))
    if seed is not None:
        page.click("#advanced summary")
        page.fill("#seed", str(seed))


def wait_for_images(page: Page, count: int) -> None:
    """Until ``count`` image tiles show pictures that have loaded (naturalWidth > 0)."""
    page.wait_for_function(
        """count => {
            const imgs = [...document.querySelectorAll('.tile-image img')];
            return imgs.length === count && imgs.every(img => img.complete && img.naturalWidth > 0);
        }""",
        arg=count,
    )


def save_screenshot(page: Page, suffix: str = "", *, full_page: bool = True) -> None:
    """Keep the page's picture for the docs when asked to (:data:`SCREENSHOT_TO`; ``suffix`` names a
    second picture beside it, ``web-phone.png``), unless the one there shows the same page (Chromium's
    software rasterizer moves a few pixels by a few levels from run to run; no need to rewrite it)."""
    if not SCREENSHOT_TO:
        return
    path = Path(SCREENSHOT_TO)
    path = path.with_name(f"{path.stem}{suffix}{path.suffix}")
    # Not in the middle of a smooth scroll: the window stays put for two frames.
    page.wait_for_function(
        "() => new Promise(done => { const y = scrollY;"
        " requestAnimationFrame(() => requestAnimationFrame(() => done(scrollY === y))); })"
    )
    png = page.screenshot(full_page=full_page, animations="disabled")
    new = Image.open(io.BytesIO(png)).convert("RGB")
    if path.is_file():
        old = Image.open(path).convert("RGB")
        if (
            old.size == new.size
            and max(high for _, high in ImageChops.difference(old, new).getextrema()) <= 32
        ):
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)


def seeds_shown(page: Page) -> list[str]:
    return page.locator(".tile .seed").all_inner_texts()


def job_executions(server: Any) -> int:
    engine = server.engine
    return len(engine.sfn.list_executions(stateMachineArn=engine.state_machines["jobs"])["executions"])


# -- the happy path --------------------------------------------------------------------------------


def test_prompt_progress_four_images_pick_download_and_rerun(watch: PageWatch, server: Any) -> None:
    server.engine.bedrock.faults = FaultPlan(latency_seconds=1.5)  # slow enough to watch progress
    page = open_page(watch, server)
    expect(page.locator("#aspect_ratio")).to_be_visible()  # a Stability model takes an aspect ratio
    expect(page.locator("#width")).to_be_hidden()
    fill_request(page, PROMPT, seed=1000)
    page.click("#generate")

    expect(page.locator("#generate")).to_be_disabled()
    expect(page.locator("#status-text")).to_have_text(
        re.compile(r"^Generating: [0-3] of 4 images finished…$")
    )
    expect(page.locator("#progress")).to_be_visible()
    expect(page.locator("#progress")).to_have_attribute("max", "4")
    expect(page.locator(".tile-pending")).to_have_count(4)

    wait_for_images(page, 4)
    expect(page.locator("#status-text")).to_have_text("4 images ready. Pick one.")
    expect(page.locator("#progress")).to_be_hidden()
    assert seeds_shown(page) == ["1000", "1001", "1002", "1003"]
    post = watch.job_posts[0]
    assert post.post_data_json == {
        "prompt": PROMPT,
        "model": "stable-image-core",
        "aspect_ratio": "1:1",
        "count": 4,
        "seed": 1000,
    }

    # Nothing selected yet: no download, no re-run.
    download, rerun = page.locator("#download"), page.locator("#rerun")
    expect(download).to_have_attribute("aria-disabled", "true")
    expect(rerun).to_be_disabled()

    # Pick image 2 with the mouse, then move to image 3 with the keyboard (a radio group).
    tiles = page.locator(".tile-image")
    tiles.nth(1).click()
    expect(tiles.nth(1)).to_have_class(SELECTED)
    expect(tiles.nth(1).locator("input")).to_be_checked()
    page.keyboard.press("ArrowRight")
    expect(tiles.nth(2).locator("input")).to_be_checked()
    expect(tiles.nth(2)).to_have_class(SELECTED)
    expect(page.locator(".tile-image.is-selected")).to_have_count(1)
    expect(page.locator("#selection-text")).to_have_text("Image 3 selected, seed 1002.")

    selected_src = tiles.nth(2).locator("img").get_attribute("src")
    assert selected_src
    # The same signed link (a presigned URL's stand-in), asking for an attachment.
    expect(download).to_have_attribute("href", selected_src + "&download=1")
    assert "signature=" in selected_src
    expect(download).to_have_attribute("aria-disabled", "false")
    expect(download).to_have_attribute("download", "image-02-1002.png")
    original = page.request.get(selected_src)
    assert original.status == 200 and original.headers["content-type"] == "image/png"

    page.mouse.move(0, 0)
    save_screenshot(page)

    # Download saves the selected image (after the screenshot: the click scrolls the page).
    with page.expect_download() as saving:
        download.click()
    saved = saving.value
    assert saved.suggested_filename == "image-02-1002.png"
    assert Path(saved.path()).read_bytes() == original.body()

    # Re-run: the same request for one image with the selected seed, which the prompt cache serves
    # (issue 20): the same parameters and seed, so no model call.
    server.engine.bedrock.faults = FaultPlan()
    expect(rerun).to_be_enabled()
    calls = server.engine.bedrock.invocations
    rerun.click()
    wait_for_images(page, 1)
    expect(page.locator(".tile-image .caption-cached")).to_have_text("cached")
    assert server.engine.bedrock.invocations == calls
    assert seeds_shown(page) == ["1002"]
    expect(page.locator("#seed")).to_have_value("1002")
    expect(page.locator("#count")).to_have_value("1")
    assert watch.job_posts[-1].post_data_json == {**post.post_data_json, "count": 1, "seed": 1002}
    rerun_src = page.locator(".tile-image img").get_attribute("src")
    assert rerun_src and rerun_src != selected_src
    assert page.request.get(rerun_src).body() == original.body()  # same prompt and seed: same picture
    assert watch.errors == []


# -- bad input -------------------------------------------------------------------------------------


def test_the_first_image_shows_while_the_others_are_made(watch: PageWatch, server: Any) -> None:
    """Live progress: image 0 (seed 1) is made at once, the other three 4 s later; the page shows the
    first picture (from GET /jobs/{id}/events) while the job still runs, the others as placeholders."""
    server.engine.bedrock.faults = FaultPlan(latency_by_seed={2: 4.0, 3: 4.0, 4: 4.0})
    page = open_page(watch, server)
    fill_request(page, PROMPT, seed=1)
    page.click("#generate")
    wait_for_images(page, 1)
    expect(page.locator("#generate")).to_be_disabled()  # the job has not ended
    expect(page.locator(".tile-pending")).to_have_count(3)
    expect(page.locator(".tile-image[data-index='0'] .seed")).to_have_text("1")
    page.locator(".tile-image").first.click()  # picked before the others are made: it can be saved now
    expect(page.locator("#download")).to_have_attribute("aria-disabled", "false")
    expect(page.locator("#download")).to_be_visible()
    wait_for_images(page, 4)
    expect(page.locator("#status-text")).to_have_text("4 images ready. Pick one.")
    assert seeds_shown(page) == ["1", "2", "3", "4"]
    expect(page.locator(".tile-image[data-index='0']")).to_have_class(SELECTED)  # still picked
    expect(page.locator("#selection-text")).to_have_text("Image 1 selected, seed 1.")
    expect(page.locator("#rerun")).to_be_enabled()


def test_empty_prompt_is_flagged_and_starts_no_job(watch: PageWatch, server: Any) -> None:
    page = open_page(watch, server)
    page.fill("#prompt", "   ")
    page.click("#generate")
    error = page.locator("#prompt-error")
    expect(error).to_be_visible()
    expect(error).to_have_text("Enter a prompt: describe the image you want.")
    expect(page.locator("#prompt")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#prompt")).to_be_focused()
    assert watch.job_posts == []
    # Typing clears the message.
    page.fill("#prompt", "a cat")
    expect(error).to_be_hidden()


def test_prompt_too_long_for_the_model_shows_the_api_message_next_to_the_field(
    watch: PageWatch, server: Any
) -> None:
    before = job_executions(server)
    page = open_page(watch, server, model="titan-image-v2")
    expect(page.locator("#width")).to_be_visible()  # Amazon models take width and height
    expect(page.locator("#aspect_ratio")).to_be_hidden()
    page.fill("#prompt", "a" * 600)
    expect(page.locator("#prompt-hint")).to_have_text("600 characters of at most 512 for this model")
    with page.expect_response(lambda r: r.url.endswith("/jobs") and r.request.method == "POST") as answer:
        page.click("#generate")
    assert answer.value.status == 400
    error = page.locator("#prompt-error")
    expect(error).to_have_text("titan-image-v2 takes prompts of at most 512 characters, not 600")
    # Titan Image v2 is past its end of life: that is said next to the model, the first field to change.
    expect(page.locator("#model-error")).to_contain_text("reached its end of life on 2026-06-30")
    expect(page.locator("#model")).to_be_focused()
    expect(page.locator("#form-error")).to_be_hidden()
    expect(page.locator(".tile")).to_have_count(0)
    expect(page.locator("#generate")).to_be_enabled()
    assert job_executions(server) == before  # no job was started


def test_a_size_the_model_does_not_take_is_shown_next_to_width(watch: PageWatch, server: Any) -> None:
    page = open_page(watch, server, model="titan-image-v2")
    fill_request(page, "a cat")
    page.fill("#width", "1000")
    page.click("#generate")
    expect(page.locator("#width-error")).to_contain_text("titan-image-v2 takes sizes 1024x1024")
    expect(page.locator("#width-error")).to_contain_text("not 1000x1024")
    assert watch.job_posts[0].post_data_json["width"] == 1000


# -- filtered and failed images --------------------------------------------------------------------


def test_a_filtered_image_is_a_tile_with_its_reason(watch: PageWatch, server: Any) -> None:
    server.engine.bedrock.faults = FaultPlan(block_output_seeds={2001})
    page = open_page(watch, server)
    fill_request(page, "a harbour at night", seed=2000)
    page.click("#generate")
    wait_for_images(page, 3)
    filtered = page.locator(".tile-filtered")
    expect(filtered).to_have_count(1)
    expect(filtered).to_have_attribute("data-reason", "CONTENT_FILTERED_OUTPUT")
    expect(filtered.locator(".problem-title")).to_have_text("Image 2: Blocked by the content filter")
    expect(filtered.locator(".problem-text")).to_have_text(
        "The model made this image but the content filter withheld it."
    )
    expect(filtered.locator(".seed")).to_have_text("2001")
    expect(filtered.locator("input")).to_have_count(0)  # not selectable
    expect(page.locator("#status-text")).to_have_text("3 of 4 images generated (1 filtered). Pick one.")
    assert seeds_shown(page) == ["2000", "2001", "2002", "2003"]


def test_every_image_blocked_shows_why(watch: PageWatch, server: Any) -> None:
    page = open_page(watch, server)
    fill_request(page, "a harbour at night [[fault:block-output]]")
    page.click("#generate")
    status = page.locator("#status.is-error #status-text")
    # What happened and what to do, in words: no reason code, no s3:// path of the stored manifest.
    expect(status.locator("strong")).to_have_text("Every image was blocked by the content filter.")
    expect(status.locator(".status-detail")).to_have_text(
        "4 images: blocked by the content filter. The model made this image but the content filter "
        "withheld it. Change the prompt (or add a negative prompt) and generate again."
    )
    text = status.inner_text()
    assert "s3://" not in text and "CONTENT_FILTERED" not in text and "manifest" not in text
    expect(page.locator("#retry")).to_be_hidden()  # the same prompt would be blocked again
    # The history lists it with its prompt, failed, in the same words.
    item = page.locator(".history-item", has_text="a harbour at night [[fault:block-output]]").first
    expect(item.locator(".history-meta")).to_contain_text(
        "failed: every image was blocked by the content filter"
    )
    expect(page.locator("#cancel")).to_be_hidden()
    expect(page.locator(".tile")).to_have_count(0)
    expect(page.locator("#actions")).to_be_hidden()
    expect(page.locator("#generate")).to_be_enabled()


# -- failures of the API or the network ------------------------------------------------------------


def test_server_error_and_network_failure_are_explained(watch: PageWatch, server: Any) -> None:
    page = open_page(watch, server)
    fill_request(page, "a cat")

    def fail(route: Route) -> None:
        route.fulfill(status=503, content_type="application/json", body='{"message": "Service Unavailable"}')

    page.route("**/jobs", fail)
    page.click("#generate")
    status = page.locator("#status.is-error #status-text")
    expect(status).to_have_text("The server failed (HTTP 503): Service Unavailable. Try again.")
    expect(page.locator("#generate")).to_be_enabled()

    page.unroute("**/jobs")
    page.route("**/jobs", lambda route: route.abort("connectionrefused"))
    page.click("#generate")
    expect(status).to_contain_text("Cannot reach the API at")
    watch.errors.clear()  # the browser logs the refused and failed requests; both were intended


def test_polling_rides_out_a_failed_status_call(watch: PageWatch, server: Any) -> None:
    page = open_page(watch, server)
    fill_request(page, "a cat", count=2)
    failed: list[str] = []
    started: list[str] = []

    def remember_job(route: Route) -> None:
        response = route.fetch()
        started.append(response.json()["job_id"])
        route.fulfill(response=response)

    def fail_once(route: Route) -> None:
        # The first status call of the job this test starts (not the history's reads of earlier jobs).
        if started and route.request.url.endswith(f"/jobs/{started[0]}") and not failed:
            failed.append(route.request.url)
            route.fulfill(status=502, json={"message": "Bad Gateway"})
        else:
            route.continue_()

    page.route("**/jobs", remember_job)
    page.route("**/jobs/*", fail_once)
    page.click("#generate")
    expect(page.locator("#status-text")).to_have_text("Connection trouble, retrying (1 of 4)…")
    wait_for_images(page, 2)
    assert len(failed) == 1
    watch.errors.clear()


def test_an_unknown_job_is_reported_with_its_id(watch: PageWatch, server: Any) -> None:
    page = open_page(watch, server)
    fill_request(page, "a cat", count=1)
    page.route(
        "**/jobs",
        lambda route: route.fulfill(status=202, json={"job_id": "no-such-job", "status": "running"}),
    )
    page.click("#generate")
    expect(page.locator("#status.is-error strong")).to_have_text("no job with id 'no-such-job'")
    expect(page.locator("#status.is-error .status-detail")).to_have_text("Job no-such-job")
    watch.errors.clear()


def test_an_error_for_a_field_not_on_the_form_goes_in_the_form_message(watch: PageWatch, server: Any) -> None:
    page = open_page(watch, server)
    fill_request(page, "a cat")
    body = {
        "error": "InvalidRequest",
        "message": "Invalid request: output_folder: must be a relative path",
        "details": [{"field": "output_folder", "message": "must be a relative path"}],
    }
    page.route("**/jobs", lambda route: route.fulfill(status=400, json=body))
    page.click("#generate")
    expect(page.locator("#form-error")).to_contain_text("output_folder: must be a relative path")
    watch.errors.clear()


# -- configuration ---------------------------------------------------------------------------------


def config_route(config: dict[str, Any]) -> Any:
    script = f"window.IMAGEGEN_CONFIG = {json.dumps(config)};"
    return lambda route: route.fulfill(status=200, content_type="text/javascript", body=script)


def test_configured_api_key_is_sent_as_x_api_key(watch: PageWatch, server: Any) -> None:
    page = watch.page
    page.route("**/config.js", config_route({"apiUrl": server.url, "apiKey": "k-123"}))
    with page.expect_request("**/models") as models:
        open_page(watch, server)
    assert models.value.headers.get("x-api-key") == "k-123"
    expect(page.locator("#api-key-field")).to_be_hidden()
    fill_request(page, "a cat", count=1)
    page.click("#generate")
    wait_for_images(page, 1)
    assert watch.job_posts[0].headers.get("x-api-key") == "k-123"


def test_required_api_key_is_asked_for(watch: PageWatch, server: Any) -> None:
    page = watch.page
    page.route("**/config.js", config_route({"apiUrl": "", "apiKey": None, "apiKeyRequired": True}))
    open_page(watch, server)
    expect(page.locator("#api_key")).to_be_visible()
    fill_request(page, "a cat", count=1)
    page.click("#generate")
    expect(page.locator("#api_key-error")).to_have_text("Enter the API key of this deployment.")
    assert watch.job_posts == []
    page.fill("#api_key", "typed-key")
    page.click("#generate")
    wait_for_images(page, 1)
    assert watch.job_posts[0].headers.get("x-api-key") == "typed-key"


DEPLOYED_API = "https://api.example.test"


def route_deployed_api(page: Page, stage: str, images: list[dict[str, Any]]) -> list[str]:
    """Answer for an API on another origin, at ``DEPLOYED_API + stage``, with CORS, as deployed:
    one model, and one job that has finished with ``images``. Returns what it was asked, as
    ``"METHOD path"``."""
    page.route("**/config.js", config_route({"apiUrl": DEPLOYED_API + stage, "apiKey": None}))
    cors = {"access-control-allow-origin": "*", "access-control-allow-headers": "content-type, x-api-key"}
    models = {
        "default_model": "nova-canvas",
        "models": [{"id": "nova-canvas", "name": "Nova", "provider": "Amazon", "default": True}],
    }
    answers = {
        ("GET", f"{stage}/models"): (200, models),
        ("POST", f"{stage}/jobs"): (202, {"job_id": "j-1", "status": "running", "status_url": "/jobs/j-1"}),
        ("GET", f"{stage}/jobs?limit=12"): (200, {"jobs": [], "next_token": None}),
        ("GET", f"{stage}/jobs/j-1"): (
            200,
            {"job_id": "j-1", "status": "succeeded", "manifest": {"images": images}},
        ),
    }
    seen: list[str] = []

    def api(route: Route) -> None:
        request = route.request
        if request.method == "OPTIONS":
            route.fulfill(status=204, headers={**cors, "access-control-allow-methods": "GET, POST"})
            return
        path = request.url.removeprefix(DEPLOYED_API)
        seen.append(f"{request.method} {path}")
        status, body = answers[(request.method, path)]
        route.fulfill(status=status, json=body, headers=cors)

    page.route(f"{DEPLOYED_API}/**", api)
    return seen


def test_api_on_another_origin_with_a_stage_path(watch: PageWatch, server: Any) -> None:
    """As deployed: the API is elsewhere, under a stage path (``/prod``), and answers with CORS."""
    page = watch.page
    filtered = {"index": 0, "seed": 7, "status": "FILTERED", "reason_code": "CONTENT_FILTERED_INPUT"}
    seen = route_deployed_api(page, "/prod", [filtered])
    page.goto(server.url + "/")
    expect(page.locator("#width")).to_be_visible()  # an Amazon model: width and height
    fill_request(page, "a cat", count=1)
    page.click("#generate")
    expect(page.locator(".tile-filtered .problem-text")).to_have_text(
        "The model refused the prompt. Rephrase it and try again."
    )
    # Every call under the stage path; the history (GET /jobs) is read at the start and after the job.
    assert set(seen) == {
        "GET /prod/models",
        "GET /prod/jobs?limit=12",
        "POST /prod/jobs",
        "GET /prod/jobs/j-1",
    }


def test_download_from_the_bucket_on_another_origin_saves_the_file(watch: PageWatch, server: Any) -> None:
    """As deployed: images come from S3 presigned URLs on another origin, where Chromium ignores the
    link's ``download`` attribute; the page links ``download_url``, which S3 answers as an attachment."""
    page = watch.page
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(png, format="PNG")
    bucket = "https://bucket.example.test/images/j-1/image-00-7.png?X-Amz-Signature=s"
    image = {
        "index": 0,
        "seed": 7,
        "status": "SUCCEEDED",
        "key": "images/j-1/image-00-7.png",
        "url": bucket,
        "download_url": bucket + "&response-content-disposition=attachment",
    }
    route_deployed_api(page, "", [image])
    served: list[str] = []

    def s3(route: Route) -> None:
        served.append(route.request.url)
        headers = {"content-type": "image/png"}
        if "response-content-disposition" in route.request.url:
            headers["content-disposition"] = 'attachment; filename="image-00-7.png"'
        route.fulfill(status=200, body=png.getvalue(), headers=headers)

    page.route("https://bucket.example.test/**", s3)
    page.goto(server.url + "/")
    fill_request(page, "a cat", count=1)
    page.click("#generate")
    wait_for_images(page, 1)
    page.locator(".tile-image").first.click()
    download = page.locator("#download")
    expect(download).to_have_attribute("href", image["download_url"])
    with page.expect_download() as saving:
        download.click()
    assert saving.value.suggested_filename == "image-00-7.png"
    assert Path(saving.value.path()).read_bytes() == png.getvalue()
    assert served == [image["url"], image["download_url"]]
    assert page.url == server.url + "/" and len(page.context.pages) == 1  # still on the page


def test_page_works_under_the_deployed_content_security_policy(watch: PageWatch, server: Any) -> None:
    """The CSP that CloudFront adds (``stacks/web.py``) allows everything the page does."""
    web = pytest.importorskip("stacks.web", reason="aws-cdk-lib is not installed")
    csp = web.content_security_policy(server.url + "/", web.DEFAULT_IMAGE_SOURCES)
    page = watch.page
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => "
        "console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
    )

    def with_csp(route: Route) -> None:
        response = route.fetch()
        route.fulfill(response=response, headers={**response.headers, "content-security-policy": csp})

    page.route(server.url + "/", with_csp)
    open_page(watch, server)
    fill_request(page, "a cat", count=1)
    page.click("#generate")
    wait_for_images(page, 1)
    page.locator(".tile-image").first.click()
    expect(page.locator("#download")).to_have_attribute("aria-disabled", "false")
    assert watch.errors == []


def test_phone_width_has_no_horizontal_scroll(browser: Browser, server: Any) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        expect(page.locator("#model option[value='stable-image-core']")).to_be_attached(timeout=TIMEOUT_MS)
        page.fill("#prompt", "a cat")
        page.fill("#count", "2")
        page.tap("#generate")
        page.wait_for_function(
            "document.querySelectorAll('.tile-image img').length === 2", timeout=TIMEOUT_MS
        )
        page.locator(".tile-image").first.tap()
        expect(page.locator("#download")).to_have_attribute("aria-disabled", "false", timeout=TIMEOUT_MS)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        for selector in ("#prompt", "#generate", "#download", "#rerun"):
            box = page.locator(selector).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 375, selector
    finally:
        context.close()


# -- in view, full size, keyboard, screen readers (issue 18, items 7 and 10) -----------------------


def new_page(browser: Browser, viewport: dict[str, int], **options: Any) -> tuple[Any, PageWatch]:
    context = browser.new_context(viewport=viewport, **options)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return context, PageWatch(page)


def in_viewport(page: Page, selector: str) -> bool:
    """Whether the element is wholly inside the window."""
    return bool(
        page.evaluate(
            """selector => {
                const r = document.querySelector(selector).getBoundingClientRect();
                return r.width > 0 && r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth;
            }""",
            selector,
        )
    )


@pytest.mark.parametrize(
    ("viewport", "motion", "scheme"),
    [(PHONE, "no-preference", "dark"), (DESKTOP, "reduce", "light")],
    ids=["phone", "desktop"],
)
def test_results_are_brought_into_view(
    browser: Browser, server: Any, viewport: dict[str, int], motion: str, scheme: str
) -> None:
    """On a phone the results are below the form: the page scrolls to them (smoothly, or at once when
    the user asks for reduced motion); on a laptop all four images and Download fit in the window."""
    context, watch = new_page(browser, viewport, reduced_motion=motion, color_scheme=scheme)
    try:
        page = open_page(watch, server)
        fill_request(page, "a lighthouse in fog", seed=3100)
        page.locator("#generate").click()
        wait_for_images(page, 4)
        expect(page.locator("#status-text")).to_have_text("4 images ready. Pick one.")
        for selector in ("#status-text", ".tile-image[data-index='3']", "#download"):
            page.wait_for_function(
                "s => { const r = document.querySelector(s).getBoundingClientRect();"
                " return r.top >= 0 && r.bottom <= innerHeight; }",
                arg=selector,
            )
            assert in_viewport(page, selector), selector
        if viewport is PHONE:
            assert page.evaluate("scrollY") > 0  # it had to scroll: the form fills the first screen
            page.locator(".tile-image").nth(2).click()
            save_screenshot(page, "-phone", full_page=False)
        # An error is brought into view too.
        page.evaluate("scrollTo(0, 0)")
        page.route(
            "**/jobs", lambda route: route.fulfill(status=503, json={"message": "Service Unavailable"})
        )
        page.locator("#generate").click()
        expect(page.locator("#status.is-error")).to_be_visible()
        page.wait_for_function(
            "() => { const r = document.querySelector('#status').getBoundingClientRect();"
            " return r.top >= 0 && r.bottom <= innerHeight; }"
        )
        expect(page.locator("#retry")).to_be_in_viewport()
    finally:
        context.close()


def test_a_click_opens_the_full_size_view(watch: PageWatch, server: Any) -> None:
    page = open_page(watch, server)
    fill_request(page, PROMPT, seed=3200)
    page.fill("#negative_prompt", "people")
    page.click("#generate")
    wait_for_images(page, 4)
    expect(page.locator("#status-text")).to_have_text("4 images ready. Pick one.")
    page.locator(".tile-image[data-index='1'] .tile-view").click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(page.locator("#viewer-title")).to_have_text("Image 2 of 4")
    expect(page.locator("#viewer-prompt")).to_have_text(PROMPT)
    expect(page.locator("#viewer-negative")).to_have_text("people")
    expect(page.locator("#viewer-seed")).to_have_text("3201")
    expect(page.locator("#viewer-model")).to_have_text(
        page.locator("#model option[value='stable-image-core']").inner_text()
    )
    image = page.locator("#viewer-image")
    expect(image).to_have_attribute("alt", PROMPT)
    assert image.get_attribute("src") == page.locator(".tile-image[data-index='1'] img").get_attribute("src")
    page.wait_for_function("() => document.querySelector('#viewer-image').naturalWidth > 0")
    save_screenshot(page, "-view", full_page=False)
    # Full size: the picture is shown larger than its tile.
    assert (
        image.bounding_box()["width"]
        > page.locator(".tile-image[data-index='1'] img").bounding_box()["width"]
    )
    expect(page.locator("#viewer-download")).to_have_attribute("download", re.compile(r"image-01-3201\.png$"))
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    expect(page.locator(".tile-image[data-index='1'] .tile-view")).to_be_focused()  # focus goes back
    # Re-run from the view: that image's seed, one image.
    page.locator(".tile-image[data-index='2'] .tile-view").click()
    page.click("#viewer-rerun")
    wait_for_images(page, 1)
    assert seeds_shown(page) == ["3202"]
    assert watch.job_posts[-1].post_data_json["seed"] == 3202
    assert watch.errors == []


def test_ctrl_enter_in_the_prompt_generates(watch: PageWatch, server: Any) -> None:
    page = open_page(watch, server)
    page.fill("#prompt", "a kettle on a stove")
    page.fill("#count", "1")
    page.focus("#prompt")
    page.keyboard.press("Control+Enter")
    wait_for_images(page, 1)
    assert watch.job_posts[0].post_data_json["prompt"] == "a kettle on a stove"
    expect(page.locator("#prompt")).to_have_value("a kettle on a stove")  # no newline typed
    expect(page.locator("#generate")).to_be_enabled()  # the first job has ended
    page.fill("#prompt", "a kettle on a stove, at night")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/jobs")) as posted:
        page.keyboard.press("Meta+Enter")  # Cmd+Enter on a Mac
    assert posted.value.post_data_json["prompt"] == "a kettle on a stove, at night"


def test_each_image_is_announced_once_with_position_seed_and_prompt(watch: PageWatch, server: Any) -> None:
    page = open_page(watch, server)
    fill_request(page, "a red kite over dunes", seed=3300)
    page.click("#generate")
    wait_for_images(page, 4)
    tree = page.locator("#grid").aria_snapshot()
    for i in range(4):
        name = f"Image {i + 1} of 4, seed {3300 + i}: a red kite over dunes"
        assert tree.count(name) == 1, tree
        assert tree.count(f"seed {3300 + i}") == 1, tree  # not again by the picture or the caption
    assert len(re.findall(r"^\s*- 'radio ", tree, re.MULTILINE)) == 4, tree
    assert "img" not in tree  # the pictures have empty alt text: the radio names them


def rgb(css: str) -> tuple[float, float, float]:
    numbers = [float(n) for n in re.findall(r"[\d.]+", css)[:3]]
    return numbers[0], numbers[1], numbers[2]


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two CSS rgb() colours."""

    def luminance(color: str) -> float:
        def channel(c: float) -> float:
            c /= 255
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

        r, g, b = (channel(c) for c in rgb(color))
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_focus_indicator_and_primary_button_contrast(browser: Browser, server: Any, scheme: str) -> None:
    """WCAG 2.2: a focus indicator of at least 3:1 against what it is drawn on (1.4.11) and button text
    of at least 4.5:1 (1.4.3), in both colour schemes."""
    context, watch = new_page(browser, DESKTOP, color_scheme=scheme)
    try:
        page = open_page(watch, server)
        panel = page.evaluate("getComputedStyle(document.querySelector('#request-form')).backgroundColor")
        body = page.evaluate("getComputedStyle(document.body).backgroundColor")
        for selector in ("#prompt", "#model", "#generate", "#advanced summary"):
            page.focus(selector)
            page.keyboard.press("Shift+Tab")
            page.keyboard.press("Tab")  # focused from the keyboard: :focus-visible
            style = page.evaluate(
                "s => { const c = getComputedStyle(document.querySelector(s));"
                " return [c.outlineStyle, c.outlineWidth, c.outlineColor]; }",
                selector,
            )
            assert style[0] == "solid" and float(style[1].removesuffix("px")) >= 2, (selector, style)
            assert contrast(style[2], panel) >= 3, (selector, style, panel)
        button = page.evaluate(
            "() => { const c = getComputedStyle(document.querySelector('#generate'));"
            " return [c.color, c.backgroundColor]; }"
        )
        assert contrast(*button) >= 4.5, button
        assert contrast(page.evaluate("getComputedStyle(document.body).color"), body) >= 4.5
    finally:
        context.close()


# -- failures in words, Retry, Cancel (issue 18, item 8) -------------------------------------------


def test_retry_sends_the_request_again_after_a_failure(watch: PageWatch, server: Any) -> None:
    page = open_page(watch, server)
    fill_request(page, "a fox in snow", count=1)
    page.route(
        "**/jobs",
        lambda route: route.fulfill(status=503, json={"message": "Service Unavailable"}),
        times=1,
    )
    page.click("#generate")
    expect(page.locator("#status.is-error strong")).to_have_text(
        "The server failed (HTTP 503): Service Unavailable. Try again."
    )
    retry = page.locator("#retry")
    expect(retry).to_have_text("Retry")
    retry.click()
    wait_for_images(page, 1)
    expect(retry).to_be_hidden()
    assert [post.post_data_json for post in watch.job_posts] == [watch.job_posts[0].post_data_json] * 2
    watch.errors.clear()  # the browser logs the 503


def test_cancel_while_running(watch: PageWatch, server: Any) -> None:
    """Cancel sends DELETE /jobs/{id}; the job ends cancelled, keeping the images it was making."""
    server.engine.bedrock.faults = FaultPlan(latency_seconds=3.0)
    page = open_page(watch, server)
    fill_request(page, "a slow boat", seed=3400, count=2)
    page.click("#generate")
    cancel = page.locator("#cancel")
    expect(cancel).to_be_visible()
    expect(page.locator("#status-text")).to_have_text(re.compile(r"^Generating: 0 of 2"))
    listed = page.locator(".history-item", has_text="a slow boat").first.locator(".history-meta")
    expect(listed).to_contain_text("running")  # listed as soon as it starts
    with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        cancel.click()
    assert deleted.value.status == 202
    expect(page.locator("#status-text")).to_have_text(re.compile(r"^Cancelling"))
    expect(page.locator("#status-text")).to_have_text(
        "Cancelled: 2 of 2 images were made and are kept. Pick one."
    )
    expect(cancel).to_be_hidden()
    wait_for_images(page, 2)
    expect(page.locator("#generate")).to_be_enabled()
    expect(listed).to_contain_text("cancelled")


def test_failed_images_are_made_again_in_place(watch: PageWatch, server: Any) -> None:
    """'Make the 1 missing image again' (POST /jobs/{id}/retry): the new job's image takes the failed
    tile's place, as deployed (API and bucket on other origins, answers as docs/api.md shows them)."""
    page = watch.page
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 90, 200)).save(png, format="PNG")
    bucket = "https://bucket.example.test/images"
    ok = {"index": 0, "seed": 7, "status": "SUCCEEDED", "key": "j-1/image-00-7.png", "url": f"{bucket}/j-1/0"}
    throttled = {"index": 1, "seed": 8, "status": "FAILED", "reason_code": "THROTTLED", "key": None}
    seen = route_deployed_api(page, "", [ok, throttled])
    remade = {
        "index": 1,
        "seed": 8,
        "status": "SUCCEEDED",
        "key": "j-2/image-01-8.png",
        "url": f"{bucket}/j-2/1",
    }
    cors = {"access-control-allow-origin": "*"}

    def retry_api(route: Route) -> None:
        request = route.request
        if request.method == "OPTIONS":
            route.fulfill(status=204, headers={**cors, "access-control-allow-headers": "content-type"})
        elif request.method == "POST":
            seen.append("POST /jobs/j-1/retry")
            body = {
                "job_id": "j-2",
                "status": "running",
                "status_url": "/jobs/j-2",
                "retry_of": "j-1",
                "images": [{"index": 1, "seed": 8}],
            }
            route.fulfill(status=202, json=body, headers=cors)
        else:
            manifest = {"images": [remade], "retry_of": "j-1"}
            route.fulfill(json={"job_id": "j-2", "status": "succeeded", "manifest": manifest}, headers=cors)

    page.route(f"{DEPLOYED_API}/jobs/j-1/retry", retry_api)
    page.route(f"{DEPLOYED_API}/jobs/j-2", retry_api)
    page.route(f"{bucket}/**", lambda route: route.fulfill(body=png.getvalue(), content_type="image/png"))
    page.goto(server.url + "/")
    fill_request(page, "a cat", count=2)
    page.click("#generate")
    wait_for_images(page, 1)
    failed = page.locator(".tile-failed")
    expect(failed.locator(".problem-title")).to_have_text("Image 2: Model busy")
    expect(failed.locator(".problem-text")).to_have_text(
        "Bedrock throttled the request, even after retries. Try again in a minute."
    )
    assert "THROTTLED" not in page.locator("#results").inner_text()
    retry = page.locator("#retry")
    expect(retry).to_have_text("Make the 1 missing image again")
    retry.click()
    wait_for_images(page, 2)
    expect(page.locator("#status-text")).to_have_text("2 images ready. Pick one.")
    assert seeds_shown(page) == ["7", "8"]
    assert "POST /jobs/j-1/retry" in seen
    expect(retry).to_be_hidden()


def test_a_failed_model_list_is_shown_with_a_way_to_load_it_again(watch: PageWatch, server: Any) -> None:
    page = watch.page
    page.route(
        "**/models", lambda route: route.fulfill(status=503, json={"message": "Service Unavailable"}), times=1
    )
    page.goto(server.url + "/")
    failed = page.locator("#models-failed")
    expect(failed).to_be_visible()
    expect(failed).to_contain_text("The list of models could not be loaded.")
    expect(failed).to_contain_text("images are made by the deployment's default model")
    expect(page.locator("#model")).to_be_visible()  # still there, with the default
    page.click("#models-retry")
    expect(page.locator("#model option[value='stable-image-core']")).to_be_attached()
    expect(failed).to_be_hidden()
    watch.errors.clear()  # the browser logs the 503


# -- history (issue 18, item 9) --------------------------------------------------------------------


def test_earlier_requests_stay_across_a_reload(watch: PageWatch, server: Any) -> None:
    page = open_page(watch, server)
    prompt = "a teapot shaped like a whale"
    fill_request(page, prompt, seed=3500, count=2)
    page.click("#generate")
    wait_for_images(page, 2)
    # the job has ended (its manifest read), not only shown its images: a job still running at the
    # reload is rightly followed with GET /jobs/{id}
    expect(page.locator("#status-text")).to_have_text("2 images ready. Pick one.")
    job_reads: list[str] = []
    page.on(
        "request",
        lambda r: (
            job_reads.append(r.url) if re.search(r"/jobs/[^/?]+$", r.url) and r.method == "GET" else None
        ),
    )
    page.reload()
    expect(page.locator("#model option[value='stable-image-core']")).to_be_attached()
    expect(page.locator(".tile")).to_have_count(0)  # a fresh page …
    item = page.locator(".history-item", has_text=prompt).first
    expect(item).to_be_visible()  # … that lists the earlier request, with its images
    expect(item.locator(".history-meta")).to_contain_text("done")
    expect(item.locator(".history-meta")).to_contain_text("2 images")
    page.wait_for_function(
        """prompt => [...document.querySelectorAll('.history-item')]
            .filter(li => li.textContent.includes(prompt))
            .some(li => [...li.querySelectorAll('img')].some(img => img.complete && img.naturalWidth > 0))""",
        arg=prompt,
    )
    # GET /jobs carries each job's prompt, model, count and thumbnail (the image index): one call, no
    # GET /jobs/{id} per job.
    assert job_reads == []
    item.locator("button").click()  # open it: its images, to pick from again
    wait_for_images(page, 2)
    assert seeds_shown(page) == ["3500", "3501"]
    expect(page.locator("#results-prompt")).to_have_text(prompt)
    expect(page.locator("#prompt")).to_have_value(prompt)  # its prompt, to use again
    expect(item.locator("button")).to_have_attribute("aria-current", "true")
    page.locator(".tile-image").nth(1).click()
    expect(page.locator("#download")).to_have_attribute("download", re.compile(r"image-01-3501\.png$"))
    calls = server.engine.bedrock.invocations
    page.click("#rerun")  # the same request, that image's seed: served by the prompt cache
    wait_for_images(page, 1)
    assert watch.job_posts[-1].post_data_json == {
        "prompt": prompt,
        "model": "stable-image-core",
        "aspect_ratio": "1:1",
        "count": 1,
        "seed": 3501,
    }
    assert server.engine.bedrock.invocations == calls
    assert watch.errors == []


def test_older_requests_are_a_click_away(watch: PageWatch, server: Any) -> None:
    """The history shows the latest 12 jobs; "Show older requests" follows GET /jobs's next_token."""
    page = open_page(watch, server)
    for i in range(13):
        answer = page.request.post(server.url + "/jobs", data={"prompt": f"older request {i}", "count": 1})
        assert answer.status == 202
    page.reload()
    expect(page.locator(".history-item", has_text="older request 12")).to_have_count(1)
    expect(page.locator(".history-item")).to_have_count(12)
    expect(page.locator(".history-item", has_text="older request 0")).to_have_count(0)
    more = page.locator("#history-more")
    with page.expect_request(lambda r: "next_token=" in r.url):
        more.click()
    expect(page.locator(".history-item", has_text="older request 0")).to_have_count(1)
    assert page.locator(".history-item").count() > 12
    jobs = page.locator(".history-item").evaluate_all("items => items.map(li => li.dataset.job)")
    assert len(jobs) == len(set(jobs))  # no job twice


# -- axe-core in every state (issue 18, item 10) ---------------------------------------------------


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations of the page as it is now (every rule axe runs by default: WCAG 2.x A and
    AA, and its best practices)."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    violations: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => n.target.join(' ') + ' :: ' + n.failureSummary),
        }))"""
    )
    return violations


def axe_in_both_schemes(page: Page, state: str, found: dict[str, Any]) -> None:
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.wait_for_function(
            "dark => matchMedia('(prefers-color-scheme: dark)').matches === dark", arg=scheme == "dark"
        )
        violations = axe_violations(page)
        if violations:
            found[f"{state}, {scheme}"] = violations
    page.emulate_media(color_scheme="light")


def require_axe() -> None:
    """axe-core must be installed; in CI (``CI`` set) its absence fails instead of skipping."""
    if not AXE.is_file():
        message = f"{AXE} is missing: npm ci --prefix tests/e2e (axe-core, pinned in package-lock.json)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_axe_reports_what_it_should(watch: PageWatch) -> None:
    """The check can fail: a picture without alt text and unreadable text are found."""
    require_axe()
    page = watch.page
    page.set_content(
        '<html lang="en"><head><title>t</title></head><body><main>'
        '<img src="data:,"><p style="color:#999;background:#aaa">faint</p></main></body></html>'
    )
    assert {v["id"] for v in axe_violations(page)} >= {"image-alt", "color-contrast"}


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_axe_finds_no_violations_in_any_state(
    browser: Browser, server: Any, viewport: dict[str, int]
) -> None:
    require_axe()
    context, watch = new_page(browser, viewport, reduced_motion="reduce")
    found: dict[str, Any] = {}
    try:
        page = open_page(watch, server)
        axe_in_both_schemes(page, "initial", found)

        server.engine.bedrock.faults = FaultPlan(latency_seconds=6.0)
        fill_request(page, "a quiet harbour", seed=3600, count=2)
        page.click("#generate")
        expect(page.locator(".tile-pending")).to_have_count(2)
        expect(page.locator("#cancel")).to_be_visible()
        axe_in_both_schemes(page, "waiting", found)

        wait_for_images(page, 2)
        server.engine.bedrock.faults = FaultPlan()
        expect(page.locator("#status-text")).to_have_text("2 images ready. Pick one.")
        axe_in_both_schemes(page, "results", found)

        page.locator(".tile-image").first.click()
        expect(page.locator("#download")).to_have_attribute("aria-disabled", "false")
        axe_in_both_schemes(page, "selected", found)

        page.get_by_role("button", name="Edit image 1").click()
        expect(page.locator("#edit")).to_be_visible()
        axe_in_both_schemes(page, "edit form", found)
        page.keyboard.press("Escape")
        expect(page.locator("#edit")).to_be_hidden()

        page.get_by_role("button", name="Upscale image 1").click()
        expect(page.locator("#results-parent")).to_be_visible()
        wait_for_images(page, 1)
        expect(page.locator("#status-text")).to_have_text("1 image ready. Pick one.")
        axe_in_both_schemes(page, "refined results", found)

        page.locator(".tile-image").first.locator(".tile-view").click()
        expect(page.locator("#viewer")).to_be_visible()
        page.wait_for_function("() => document.querySelector('#viewer-image').naturalWidth > 0")
        axe_in_both_schemes(page, "full-size view", found)
        page.keyboard.press("Escape")

        page.fill("#prompt", "a harbour at night [[fault:block-output]]")
        page.click("#generate")
        expect(page.locator("#status.is-error")).to_be_visible()
        expect(page.locator("#generate")).to_be_enabled()
        axe_in_both_schemes(page, "failed", found)

        page.fill("#prompt", "")
        page.click("#generate")
        expect(page.locator("#prompt-error")).to_be_visible()
        axe_in_both_schemes(page, "field error", found)
    finally:
        server.engine.bedrock.faults = FaultPlan()
        context.close()
    assert found == {}, json.dumps(found, indent=1)


# -- refining a picked image (issue 16, item 3) ----------------------------------------------------


def test_upscale_vary_and_edit_an_image(watch: PageWatch, server: Any) -> None:
    """Under each image: Upscale, Vary (4) and Edit, each a new job from the image's key (docs/api.md,
    "Refining a stored image"), run by the offline workflow and stand-in; the results name their parent
    and lead back to it."""
    page = open_page(watch, server)
    prompt = "a lighthouse on a rock, ink drawing"
    fill_request(page, prompt, seed=3700, count=2)
    page.click("#generate")
    wait_for_images(page, 2)
    expect(page.locator("#status-text")).to_have_text("2 images ready. Pick one.")
    source = page.locator(".tile-image[data-index='1']")
    source_src = source.locator("img").get_attribute("src")
    assert source_src
    key = re.search(r"/files/([^?]+)", source_src)
    assert key

    # Upscale image 2: one image, its parent named, with the way back.
    page.get_by_role("button", name="Upscale image 2").click()
    wait_for_images(page, 1)
    expect(page.locator("#status-text")).to_have_text("1 image ready. Pick one.")
    assert watch.job_posts[-1].post_data_json == {"source_image": key.group(1), "operation": "upscale"}
    parent = page.locator("#results-parent")
    expect(parent).to_contain_text(f"Upscaled from image 2 (seed 3701) of “{prompt}”.")
    # The row it came from, small, above the new row of choices, the source marked.
    expect(parent.locator(".parent-row img")).to_have_count(2)
    expect(parent.locator(".parent-row .is-source img")).to_have_attribute("src", source_src)
    upscaled = page.get_by_role("radio", name=re.compile(rf"^Image 1 of 1, seed \d+: {prompt}$"))
    expect(upscaled).to_have_count(1)
    page.locator(".tile-image .tile-view").click()  # the full-size view: the prompt it came from
    expect(page.locator("#viewer-prompt")).to_have_text(prompt)
    page.keyboard.press("Escape")
    parent.get_by_role("button", name="Show the images it came from").click()
    wait_for_images(page, 2)
    assert seeds_shown(page) == ["3700", "3701"]
    expect(parent).to_be_hidden()

    # Vary (4) image 1: four images from it, with the prompt.
    page.get_by_role("button", name="Vary (4) image 1").click()
    wait_for_images(page, 4)
    expect(page.locator("#status-text")).to_have_text("4 images ready. Pick one.")
    varied = watch.job_posts[-1].post_data_json
    assert varied["operation"] == "variation" and varied["count"] == 4 and varied["prompt"] == prompt
    expect(parent).to_contain_text("Variations from image 1 (seed 3700)")
    parent.get_by_role("button", name="Show the images it came from").click()
    wait_for_images(page, 2)

    # Edit image 1: a small form; search and replace.
    page.get_by_role("button", name="Edit image 1").click()
    dialog = page.locator("#edit")
    expect(dialog).to_be_visible()
    expect(page.locator("#edit-title")).to_have_text("Edit image 1")
    page.fill("#edit-prompt", "a windmill")
    page.click("#edit-submit")
    expect(page.locator("#edit-error")).to_have_text("Say what to find in the image.")
    expect(page.locator("#edit-search")).to_be_focused()
    page.fill("#edit-search", "the lighthouse")
    page.click("#edit-submit")
    expect(dialog).to_be_hidden()
    wait_for_images(page, 1)
    assert watch.job_posts[-1].post_data_json == {
        "source_image": re.sub(r"image-01-3701", "image-00-3700", key.group(1)),
        "operation": "search-and-replace",
        "search_prompt": "the lighthouse",
        "prompt": "a windmill",
        "count": 1,
    }
    expect(parent).to_contain_text("Edited (search and replace) from image 1 (seed 3700)")

    # Repaint a part described in words (inpaint by mask_prompt), from the same form.
    parent.get_by_role("button", name="Show the images it came from").click()
    wait_for_images(page, 2)
    page.get_by_role("button", name="Edit image 1").click()
    page.get_by_label("Repaint a part, described in words").check()
    expect(page.locator("#edit-prompt-label")).to_have_text("What to paint there")
    page.fill("#edit-mask", "the sky")
    page.fill("#edit-prompt", "a starry night")
    save_screenshot(page, "-edit", full_page=False)  # docs/web.md: the Edit form
    page.click("#edit-submit")
    wait_for_images(page, 1)
    repainted = watch.job_posts[-1].post_data_json
    assert (repainted["operation"], repainted["mask_prompt"], repainted["prompt"]) == (
        "inpaint",
        "the sky",
        "a starry night",
    )
    assert "search_prompt" not in repainted
    expect(parent).to_contain_text("Edited (repainted) from image 1 (seed 3700)")
    expect(page.locator("#status-text")).to_have_text("1 image ready. Pick one.")
    save_screenshot(page, "-refined", full_page=False)  # docs/web.md: a refined row under its parent

    # Outpaint from the same form: the sides' pixels.
    parent.get_by_role("button", name="Show the images it came from").click()
    wait_for_images(page, 2)
    page.get_by_role("button", name="Edit image 2").click()
    page.get_by_label("Extend the picture").check()
    expect(page.locator("#edit-left")).to_be_visible()
    expect(page.locator("#edit-search")).to_be_hidden()
    page.fill("#edit-prompt", "")
    page.click("#edit-submit")
    wait_for_images(page, 1)
    extended = watch.job_posts[-1].post_data_json
    assert extended["operation"] == "outpaint" and (extended["left"], extended["right"]) == (256, 256)
    assert "prompt" not in extended and "up" not in extended
    expect(parent).to_contain_text("Extended from image 2 (seed 3701)")
    assert watch.errors == []
