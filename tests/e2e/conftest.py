"""The web app in real Chromium (Debian's, driven by Playwright) against a real API and worker.

The browser reaches the API through a byte-counting proxy that can also cap the upload rate, so
a test can reload the page in the middle of an upload and count what the server was sent.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from app.auth import create_api_key
from app.resources import Resources
from tests.integration.jobs.conftest import Stack, worker_settings
from tests.support.servers import REPO, ApiServer, free_port

WEB_DIST = REPO / "web" / "dist"
SCREENSHOTS = REPO / ".e2e-screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return os.environ.get("SLUICE_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


class CountingProxy:
    """A TCP proxy that counts the bytes clients send upstream and can cap their rate."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sent = 0
        self.rate: float | None = None
        """Bytes per second, summed over every connection; None = as fast as it goes."""
        self._window_start = time.monotonic()
        self._window_bytes = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def throttle(self, rate: float | None) -> None:
        self.rate = rate
        self._window_start, self._window_bytes = time.monotonic(), 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()

    async def _pace(self, size: int) -> None:
        self._window_bytes += size
        if self.rate:
            ahead = self._window_bytes / self.rate - (time.monotonic() - self._window_start)
            if ahead > 0:
                await asyncio.sleep(ahead)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool) -> None:
            try:
                while data := await src.read(65536):
                    if upstream:
                        self.sent += len(data)
                        await self._pace(len(data))
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()
                up_writer.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        self._writers -= {writer, up_writer}


async def new_key(resources: Resources, name: str, *, admin: bool = False) -> str:
    async with resources.sessionmaker() as session:
        _, secret = await create_api_key(session, name, admin=admin)
        await session.commit()
    return secret


@pytest.fixture(scope="session")
def web_build() -> Path:
    if not (WEB_DIST / "index.html").is_file():
        if os.environ.get("SLUICE_WEB_BUILD") == "0":
            pytest.skip("the web app is not built (SLUICE_WEB_BUILD=0)")
        pytest.fail("web/dist/index.html is missing: ops/test builds it with npm (see .sluice/logs/web-build.log)")
    return WEB_DIST


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture(scope="session")
def web_stack(resources: Resources, web_build: Path) -> Iterator[Stack]:
    """An API serving the built web app, and a worker of its own."""
    settings = worker_settings(resources.settings, f"{resources.settings.redis_prefix}-web").replace(
        web_dist=str(web_build)
    )
    stack = Stack(settings, ApiServer(settings), None)
    stack.start_worker()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
async def proxy(web_stack: Stack) -> AsyncIterator[CountingProxy]:
    counting = CountingProxy(web_stack.api.port)
    await counting.start()
    yield counting
    await counting.stop()


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
