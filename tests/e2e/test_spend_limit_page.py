"""The page at the daily spend ceiling, in headless Chromium over the local server (``imagegen serve
--web-dir web --api-key ... --daily-spend-usd N``): a request past the caller's ceiling shows the API's
message (what is left, when it resets) and no Retry button, since retrying before midnight UTC cannot
help; the job that fitted ran."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from image_pipeline.core.settings import get_settings

from imagegen.runtime.local_api import create_app
from tests.support import count_executions, serve

try:
    from playwright.sync_api import Browser, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip("playwright is not installed", allow_module_level=True)

CHROMIUM = Path(os.environ.get("IMAGEGEN_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.is_file():  # pragma: no cover - depends on the machine
    pytest.skip(f"{CHROMIUM} is missing", allow_module_level=True)

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
#: Room for one 4-image job of the default model (about $0.16), not two.
LIMIT = 0.25
expect.set_options(timeout=30_000)


@pytest.fixture
def limited_page_server(offline_engine: Any, engine: Any) -> Iterator[tuple[str, str]]:
    """The local server with the page, one fresh key and the ceiling (the engine's and the handlers')."""
    name, secret = f"page-{uuid.uuid4().hex[:6]}", f"secret-{uuid.uuid4().hex}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(offline_engine.config, "daily_spend_limit_usd", LIMIT)
        patch.setenv("DAILY_SPEND_LIMIT_USD", str(LIMIT))
        get_settings.cache_clear()
        with serve(create_app(offline_engine, web_dir=WEB_DIR, api_keys={name: secret})) as url:
            yield url, secret
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser
        browser.close()


def test_past_the_ceiling_the_page_says_what_is_left_and_when_it_resets(
    browser: Browser, limited_page_server: tuple[str, str], engine: Any
) -> None:
    url, secret = limited_page_server
    context = browser.new_context()
    page = context.new_page()
    try:
        # the key the page keeps for the tab (what typing it once does), so the model list loads with it
        page.add_init_script(f"sessionStorage.setItem('imagegen.apiKey', {secret!r})")
        page.goto(url + "/")
        expect(page.locator("#model option[value='stable-image-core']")).to_be_attached()
        page.select_option("#model", "stable-image-core")
        page.fill("#prompt", "a lighthouse at dusk")
        page.fill("#count", "4")
        page.click("#generate")
        expect(page.locator(".tile-image img")).to_have_count(4)  # the first job fits

        before = count_executions(engine)
        page.fill("#prompt", "a second lighthouse")
        page.click("#generate")
        status = page.locator("#status-text")
        expect(status).to_contain_text("daily spend limit reached")
        expect(status).to_contain_text("left")
        expect(status).to_contain_text("resets at")
        expect(page.locator("#retry")).to_be_hidden()
        assert count_executions(engine) == before
    finally:
        context.close()
