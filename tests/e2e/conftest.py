"""The web app in real Chromium (Debian's, driven by Playwright) against a real API and worker.

The browser reaches the API through a proxy that can cap the upload rate, so a test can reload
the page in the middle of an upload.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from app.resources import Resources
from tests.conftest import new_key
from tests.integration.jobs.conftest import Stack, worker_settings
from tests.support.browser import CHROMIUM_ARGS, chromium_path
from tests.support.servers import REPO, ApiServer, FaultProxy

WEB_DIST = REPO / "web" / "dist"
SCREENSHOTS = REPO / ".e2e-screenshots"


@pytest.fixture(scope="package")
def web_build() -> Path:
    if not (WEB_DIST / "index.html").is_file():
        if os.environ.get("SLUICE_WEB_BUILD") == "0":
            pytest.skip("the web app is not built (SLUICE_WEB_BUILD=0)")
        pytest.fail("web/dist/index.html is missing: ops/test builds it with npm (see .sluice/logs/web-build.log)")
    return WEB_DIST


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture(scope="package")
def web_stack(resources: Resources, web_build: Path) -> Iterator[Stack]:
    """An API serving the built web app, and a worker of its own."""
    settings = worker_settings(resources.settings, f"{resources.settings.redis_prefix}-web").replace(
        web_dist=str(web_build)
    )
    stack = Stack(settings, ApiServer(settings), None)
    stack.start_worker()
    yield stack
    stack.stop()


@pytest.fixture(scope="package")
async def proxy(web_stack: Stack) -> AsyncIterator[FaultProxy]:
    """The browser's way to the API: it can cap the upload rate, so a test can act mid-upload."""
    between = FaultProxy(web_stack.api.url.removeprefix("http://"))
    await between.start()
    yield between
    await between.stop()


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    context.set_default_timeout(30_000)
    opened = await context.new_page()
    try:
        yield opened
    finally:
        SCREENSHOTS.mkdir(exist_ok=True)
        name = request.node.name.replace("/", "_")
        await opened.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        await context.close()


@pytest.fixture
async def user_key(resources: Resources) -> str:
    return await new_key(resources, f"web-user-{uuid.uuid4().hex[:6]}")


async def sign_in(page: Page, base: str, key: str, path: str = "/") -> None:
    await page.goto(base + path)
    await page.get_by_test_id("api-key-input").fill(key)
    await page.get_by_test_id("sign-in-submit").click()
    await page.get_by_test_id("whoami").wait_for()
