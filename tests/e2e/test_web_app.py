"""What a person sees in the web app: signing in, uploading, processing, rejects, cancelling, and
the operations dashboard, in Debian's Chromium against the real API, worker, PostgreSQL, Redis and S3."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, expect

from app.resources import Resources
from db.storage import MinioStore
from tests.conftest import new_key
from tests.e2e.conftest import sign_in
from tests.integration.jobs.conftest import Stack, wait_job, worker_settings
from tests.support.servers import ApiServer, FaultProxy, s3_server

MIB = 1024 * 1024


def write_csv(path: Path, target_bytes: int) -> int:
    """A CSV of about ``target_bytes``; returns its number of data rows."""
    line = "{0},name {0},{1}.{2:02d},2026-11-{3:02d}\n"
    rows = 0
    with path.open("w", newline="") as out:
        out.write("id,name,amount,day\n")
        written = 0
        while written < target_bytes:
            chunk = "".join(line.format(rows + i, (rows + i) % 9973, (rows + i) % 100, (rows + i) % 28 + 1) for i in range(10_000))
            out.write(chunk)
            written += len(chunk)
            rows += 10_000
    return rows


async def tus_bytes_received(stack: Stack) -> float:
    """The API's count of upload bytes its tus PATCHes took in (``/metrics``)."""
    async with httpx.AsyncClient(base_url=stack.api.url) as http:
        text = (await http.get("/metrics")).text
    found = re.search(r'^sluice_upload_received_bytes_total\{route="tus"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def percent(text: str) -> float:
    return float(text.strip().rstrip("%").replace(",", ""))


async def choose(page: Page, path: Path, *, process: bool = True) -> None:
    if not process:
        await page.get_by_test_id("process-default").uncheck()
    await page.get_by_test_id("file-input").set_input_files(str(path))
    await expect(page.get_by_test_id("transfer-row").filter(has_text=path.name)).to_have_attribute("data-state", "waiting")


async def test_sign_in_with_a_wrong_key_then_a_good_one_then_sign_out(page: Page, proxy: FaultProxy, user_key: str) -> None:
    await page.goto(proxy.url + "/")
    await page.get_by_test_id("api-key-input").fill("slk_not-a-real-key")
    await page.get_by_test_id("sign-in-submit").click()
    await expect(page.get_by_test_id("sign-in-error")).to_contain_text("This key is not valid")

    await page.get_by_test_id("api-key-input").fill(user_key)
    await page.get_by_test_id("sign-in-submit").click()
    await expect(page.get_by_test_id("key-name")).to_have_text(re.compile(r"^web-user-"))
    assert await page.evaluate("() => sessionStorage.getItem('sluice.apiKey')") == user_key
    assert await page.evaluate("() => localStorage.getItem('sluice.apiKey')") is None

    await page.get_by_test_id("sign-out").click()
    await expect(page.get_by_test_id("sign-in-form")).to_be_visible()
    assert await page.evaluate("() => sessionStorage.getItem('sluice.apiKey')") is None


async def test_a_50_mb_csv_shows_upload_then_processing_then_its_table(
    page: Page, proxy: FaultProxy, user_key: str, tmp_path: Path
) -> None:
    path = tmp_path / "fifty.csv"
    rows = write_csv(path, 50 * MIB)
    await sign_in(page, proxy.url, user_key)
    await choose(page, path)

    proxy.throttle(20 * MIB)
    try:
        await page.get_by_test_id("upload-start").click()
        row = page.get_by_test_id("transfer-row").filter(has_text=path.name)
        await expect(row).to_have_attribute("data-state", "uploading")
        seen: set[float] = set()
        while (await row.get_attribute("data-state")) == "uploading":
            with contextlib.suppress(Exception):
                seen.add(percent(await row.get_by_test_id("upload-percent").inner_text(timeout=500)))
            await asyncio.sleep(0.1)
    finally:
        proxy.throttle(None)
    assert any(0 < value < 100 for value in seen), f"no upload progress between 0 and 100 %: {sorted(seen)}"
    await expect(row).to_have_attribute("data-state", "stored")

    live = row.get_by_test_id("job-live")
    await expect(live).to_have_attribute("data-state", "completed", timeout=240_000)
    await expect(live.get_by_test_id("job-live-rows")).to_contain_text(f"{rows:,}")

    await row.get_by_test_id("file-link").click()
    await expect(page.get_by_test_id("file-page")).to_be_visible()
    await expect(page.get_by_test_id("preview-total")).to_contain_text(f"{rows:,}")
    await expect(page.get_by_test_id("preview-row").first).to_be_visible()
    columns = await page.get_by_test_id("preview-column").all_text_contents()
    assert [c for c, name in zip(columns, ["id", "name", "amount", "day"]) if c.startswith(name)] == columns[:4], columns


async def test_a_reload_in_the_middle_of_a_200_mb_upload_resumes_where_it_stopped(
    page: Page, proxy: FaultProxy, web_stack: Stack, user_key: str, tmp_path: Path
) -> None:
    path = tmp_path / "two-hundred.csv"
    write_csv(path, 200 * MIB)
    size = path.stat().st_size
    await sign_in(page, proxy.url, user_key)
    await choose(page, path, process=False)

    before = await tus_bytes_received(web_stack)
    proxy.throttle(25 * MIB)
    try:
        await page.get_by_test_id("upload-start").click()
        row = page.get_by_test_id("transfer-row").filter(has_text=path.name)
        await expect(row).to_have_attribute("data-state", "uploading")
        async with asyncio.timeout(120):
            while percent(await row.get_by_test_id("upload-percent").inner_text()) < 30:
                await asyncio.sleep(0.2)
        await page.reload()
        await page.get_by_test_id("whoami").wait_for()
        await expect(page.get_by_test_id("restored-notice")).to_be_visible()
        row = page.get_by_test_id("transfer-row").filter(has_text=path.name)
        await expect(row).to_have_attribute("data-state", "needs file")
        await page.get_by_test_id("file-input").set_input_files(str(path))
        await page.get_by_test_id("upload-start").click()
        await expect(row).to_have_attribute("data-state", "stored", timeout=180_000)
    finally:
        proxy.throttle(None)
    received = await tus_bytes_received(web_stack) - before
    part = web_stack.settings.part_size
    assert size <= received <= size + part, f"the server received {received:,} bytes for a {size:,}-byte file (part {part:,})"
    async with httpx.AsyncClient(base_url=web_stack.api.url, headers={"Authorization": f"Bearer {user_key}"}) as http:
        files = (await http.get("/api/v1/files", params={"limit": 1000})).json()["items"]
        stored = [f for f in files if f["filename"] == path.name]
        assert len(stored) == 1 and stored[0]["size"] == size and stored[0]["status"] == "stored"


async def test_a_png_named_csv_shows_the_servers_415_reason(
    page: Page, proxy: FaultProxy, web_stack: Stack, user_key: str, tmp_path: Path
) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89" + bytes(2048)
    path = tmp_path / "picture.csv"
    path.write_bytes(png)
    async with httpx.AsyncClient(base_url=web_stack.api.url, headers={"Authorization": f"Bearer {user_key}"}) as http:
        direct = await http.put("/api/v1/files/picture.csv", content=png)
    assert direct.status_code == 415, direct.text

    await sign_in(page, proxy.url, user_key)
    await choose(page, path)
    await page.get_by_test_id("upload-start").click()
    row = page.get_by_test_id("transfer-row").filter(has_text=path.name)
    await expect(row).to_have_attribute("data-state", "failed")
    error = row.get_by_test_id("upload-error")
    await expect(error).to_contain_text("415")
    await expect(error).to_contain_text(direct.json()["detail"][:60])


async def test_a_csv_with_bad_rows_shows_its_rejects(
    page: Page, proxy: FaultProxy, user_key: str, tmp_path: Path
) -> None:
    lines = ["id,name,amount"] + [f"{i},n{i},{i}.5" for i in range(1, 101)]
    lines[10] = "10,n10,10.5,one field too many"
    lines[50] = "50"
    path = tmp_path / "bad-rows.csv"
    path.write_text("\n".join(lines) + "\n")
    await sign_in(page, proxy.url, user_key)
    await choose(page, path)
    await page.get_by_test_id("upload-start").click()
    row = page.get_by_test_id("transfer-row").filter(has_text=path.name)
    await expect(row.get_by_test_id("job-live")).to_have_attribute("data-state", "completed", timeout=120_000)
    await row.get_by_test_id("file-link").click()

    await expect(page.get_by_test_id("file-rows-rejected")).to_contain_text("2")
    await expect(page.get_by_test_id("preview-total")).to_contain_text("98")
    rejects = page.get_by_test_id("reject-row")
    await expect(rejects).to_have_count(2)
    texts = await rejects.all_inner_texts()
    assert "10" in texts[0] and "one field too many" in texts[0], texts
    assert "50" in texts[1], texts


async def test_cancelling_a_running_job_from_its_file_page(
    page: Page, proxy: FaultProxy, web_stack: Stack, user_key: str, tmp_path: Path
) -> None:
    path = tmp_path / "slow.csv"
    write_csv(path, 8 * MIB)
    async with httpx.AsyncClient(base_url=web_stack.api.url, headers={"Authorization": f"Bearer {user_key}"}, timeout=60) as http:
        stored = await http.put(f"/api/v1/files/{path.name}", params={"process": "false"}, content=path.read_bytes())
        assert stored.status_code == 201, stored.text
        file_id = stored.json()["id"]
        # One row per window and one window at a time: the job runs long enough to be cancelled.
        started = await http.post("/api/v1/jobs", json={"file_ids": [file_id], "options": {"window_rows": 1, "max_concurrency": 1}})
        assert started.status_code == 201, started.text
        job_id = started.json()["jobs"][0]["id"]

        await sign_in(page, proxy.url, user_key, path=f"/files/{file_id}")
        active = page.get_by_test_id("active-job")
        await expect(active.get_by_test_id("job-live")).to_have_attribute("data-state", "processing", timeout=60_000)
        await active.get_by_test_id("job-cancel").click()
        await page.get_by_test_id("cancel-dialog-confirm").click()
        await expect(page.get_by_test_id("job-summary")).to_have_attribute("data-state", "cancelled", timeout=60_000)
        assert (await wait_job(http, job_id))["state"] == "cancelled"


async def test_a_key_that_is_not_admin_gets_no_operations_page(page: Page, proxy: FaultProxy, user_key: str) -> None:
    await sign_in(page, proxy.url, user_key)
    await expect(page.get_by_test_id("nav-files")).to_be_visible()
    await expect(page.get_by_test_id("nav-operations")).to_have_count(0)
    await page.goto(proxy.url + "/operations")
    await expect(page.get_by_test_id("forbidden")).to_be_visible()
    await expect(page.get_by_test_id("operations-page")).to_have_count(0)


@pytest.fixture
def private_stack(resources: Resources, web_stack: Stack) -> Iterator[tuple[Stack, Callable[[], None]]]:
    """A stack with an S3 server of its own and a function that stops that server."""
    with contextlib.ExitStack() as s3:
        endpoint = s3.enter_context(s3_server())
        settings = worker_settings(resources.settings, f"{resources.settings.redis_prefix}-ops").replace(
            s3_endpoint=endpoint, web_dist=web_stack.settings.web_dist
        )
        MinioStore.from_settings(settings).ensure_bucket()
        stack = Stack(settings, ApiServer(settings), None)
        try:
            stack.start_worker()
            yield stack, s3.close
        finally:
            stack.stop()


async def test_the_operations_dashboard_charts_uploads_and_turns_the_store_red_when_it_stops(
    page: Page, private_stack: tuple[Stack, Callable[[], None]], resources: Resources
) -> None:
    stack, stop_s3 = private_stack
    admin = await new_key(resources, "web-admin", admin=True)
    async with httpx.AsyncClient(base_url=stack.api.url, headers={"Authorization": f"Bearer {admin}"}, timeout=60) as http:
        for n in range(3):
            body = "a,b\n" + "".join(f"{i},{i * n}\n" for i in range(1000))
            stored = await http.put(f"/api/v1/files/ops-{n}.csv", content=body.encode())
            assert stored.status_code == 201, stored.text
            assert (await wait_job(http, stored.json()["job_id"]))["state"] == "completed"

    await sign_in(page, stack.api.url, admin)
    await page.get_by_test_id("nav-operations").click()
    await expect(page.get_by_test_id("operations-page")).to_be_visible()
    for chart in ("chart-uploads", "chart-bytes", "chart-rows"):
        await expect(page.get_by_test_id(chart)).to_be_visible()
        total = float(await page.get_by_test_id(chart).get_attribute("data-total") or "0")
        assert total > 0, f"{chart} is empty"
    await expect(page.get_by_test_id("health-storage")).to_have_attribute("data-ok", "true")

    stop_s3()
    await page.get_by_test_id("ops-refresh").click()
    await expect(page.get_by_test_id("health-storage")).to_have_attribute("data-ok", "false", timeout=60_000)
    await expect(page.get_by_test_id("health-postgres")).to_have_attribute("data-ok", "true")
    await expect(page.get_by_test_id("health-redis")).to_have_attribute("data-ok", "true")
