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


def save_screenshot(page: Page) -> None:
    """Keep the page's picture for the docs when asked to (:data:`SCREENSHOT_TO`), unless the one there
    shows the same page (Chromium's software rasterizer moves a few pixels by a few levels from run to
    run; no need to rewrite it)."""
    if not SCREENSHOT_TO:
        return
    path = Path(SCREENSHOT_TO)
    png = page.screenshot(full_page=True, animations="disabled")
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

    # Re-run: the same request for one image with the selected seed.
    server.engine.bedrock.faults = FaultPlan()
    expect(rerun).to_be_enabled()
    rerun.click()
    wait_for_images(page, 1)
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
