"""Processing end to end: upload through the API, a real worker, rows and rejects read back."""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
import zipfile
from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import dramatiq
import httpx
import msgspec
import psutil
import pytest
import xlsxwriter

from app.auth import create_api_key
from app.resources import Resources
from db.engine import make_engine, make_sessionmaker
from tests.conftest import fresh_database
from tests.integration.jobs.conftest import Stack, wait_job, worker_settings
from tests.support.servers import ApiServer, FaultProxy
from workers.broker import make_broker
from workers.contracts import MAINTENANCE_QUEUE, job_channel, snapshot_key

TYPED_CSV = (
    "id,name,amount,day,active,note\n"
    '1,alpha,1.50,2024-01-31,true,"plain"\n'
    '2,"beta, with comma",2.25,2024-02-29,false,"said ""hi"""\n'
    '3,gamma,-3,2024-03-01,true,"two\nlines"\n'
)


def numbered_csv(rows: int, *, start: int = 1) -> bytes:
    lines = ["n,code,label"]
    lines += [f"{i},{uuid.UUID(int=i)},label {i}" for i in range(start, start + rows)]
    return ("\n".join(lines) + "\n").encode()


async def upload(client: httpx.AsyncClient, name: str, body: bytes, *, process: bool = True) -> dict[str, object]:
    response = await client.put(f"/api/v1/files/{name}", params={"process": str(process).lower()}, content=body)
    assert response.status_code == 201, response.text
    return response.json()


async def process(client: httpx.AsyncClient, file_id: object, **options: object) -> dict[str, object]:
    response = await client.post("/api/v1/jobs", json={"file_ids": [file_id], "options": options})
    assert response.status_code == 201, response.text
    return response.json()["jobs"][0]


async def all_rows(client: httpx.AsyncClient, file_id: object) -> dict[str, object]:
    response = await client.get(f"/api/v1/files/{file_id}/rows", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return response.json()


async def test_csv_upload_becomes_a_typed_table(jobs_client: httpx.AsyncClient, stack: Stack, resources: Resources) -> None:
    record = await upload(jobs_client, "typed.csv", TYPED_CSV.encode())
    assert record["job_id"], record

    job = await wait_job(jobs_client, record["job_id"])

    assert job["state"] == "completed", job["error"]
    assert (job["rows_ok"], job["rows_rejected"], job["progress"]) == (3, 0, 100.0)
    assert job["attempts"] == 1 and job["finished_at"] and job["error"] is None
    assert job["bytes_read"] == job["bytes_total"] == len(TYPED_CSV.encode())
    rows = await all_rows(jobs_client, record["id"])
    assert rows["columns"] == [
        {"name": "id", "type": "bigint"},
        {"name": "name", "type": "text"},
        {"name": "amount", "type": "numeric"},
        {"name": "day", "type": "date"},
        {"name": "active", "type": "boolean"},
        {"name": "note", "type": "text"},
    ]
    assert rows["rows"] == [
        [1, "alpha", "1.50", "2024-01-31", True, "plain"],
        [2, "beta, with comma", "2.25", "2024-02-29", False, 'said "hi"'],
        [3, "gamma", "-3", "2024-03-01", True, "two\nlines"],
    ]
    assert rows["row_numbers"] == [2, 3, 4] and rows["total"] == 3  # the header is row 1
    snapshot = await resources.redis.get(snapshot_key(job_channel(stack.settings.redis_prefix, record["job_id"])))
    terminal = msgspec.json.decode(snapshot)
    assert terminal["type"] == "completed" and terminal["rows_ok"] == 3 and terminal["dataset_table"]
    file = (await jobs_client.get(f"/api/v1/files/{record['id']}")).json()
    assert (file["job_id"], file["job_state"], file["rows_ok"], file["rows_rejected"]) == (record["job_id"], "completed", 3, 0)
    assert file["dataset_table"] == terminal["dataset_table"] == rows["table"]
    listed = (await jobs_client.get("/api/v1/files")).json()["items"]
    assert next(f for f in listed if f["id"] == record["id"])["job_state"] == "completed"


async def test_every_row_is_stored_or_rejected_with_its_reason(jobs_client: httpx.AsyncClient) -> None:
    body = (
        "id,amount,day\n"
        "1,1.5,2024-01-01\n2,2.5,2024-01-02\n3,3.5,2024-01-03\n"
        "4,4.5\n"  # ragged: 2 fields
        "5,abc,2024-01-05\n"  # does not cast to numeric
        "6,6.5,2024-02-30\n"  # no such date
        "7,7.5,2024-01-07\n"
    ).encode()
    record = await upload(jobs_client, "mixed.csv", body, process=False)
    # Pinned types: a value that breaks one rejects its row (unpinned, the column would widen).
    pinned = {"cast": {"amount": "numeric", "day": "date"}}
    job = await wait_job(jobs_client, (await process(jobs_client, record["id"], window_rows=3, mapping=pinned))["id"])

    assert job["state"] == "completed", job["error"]
    assert (job["rows_ok"], job["rows_rejected"]) == (4, 3)
    rejects = (await jobs_client.get(f"/api/v1/jobs/{job['id']}/rejects")).json()
    assert rejects["total"] == 3
    by_row = {r["row_number"]: r for r in rejects["items"]}
    assert sorted(by_row) == [5, 6, 7]  # the header is row 1
    assert "2" in by_row[5]["reason"] and "3" in by_row[5]["reason"] and by_row[5]["raw"] == "4,4.5"
    assert "numeric" in by_row[6]["reason"] and "abc" in by_row[6]["raw"]
    assert "2024-02-30" in by_row[7]["reason"]
    assert "(column day, whose type date the job pinned)" in by_row[7]["reason"]
    rows = await all_rows(jobs_client, record["id"])
    assert rows["row_numbers"] == [2, 3, 4, 8]


async def test_tsv_end_to_end(jobs_client: httpx.AsyncClient) -> None:
    body = "city\tpopulation\tratio\nOslo\t709000\t0.5\nBergen\t291000\t0.25\n".encode()
    record = await upload(jobs_client, "cities.tsv", body)
    assert record["kind"] == "tsv"
    job = await wait_job(jobs_client, record["job_id"])
    assert job["state"] == "completed", job["error"]
    rows = await all_rows(jobs_client, record["id"])
    assert [c["type"] for c in rows["columns"]] == ["text", "bigint", "numeric"]
    assert rows["rows"] == [["Oslo", 709000, "0.5"], ["Bergen", 291000, "0.25"]]


def xlsx_bytes(rows: list[list[object]]) -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet = book.add_worksheet("Vendors")
    dates = book.add_format({"num_format": "yyyy-mm-dd"})
    for r, values in enumerate(rows):
        for c, value in enumerate(values):
            if isinstance(value, date):
                sheet.write_datetime(r, c, value, dates)
            else:
                sheet.write(r, c, value)
    book.close()
    return buffer.getvalue()


async def test_xlsx_end_to_end(jobs_client: httpx.AsyncClient) -> None:
    body = xlsx_bytes(
        [["vendor", "amount", "since"], ["Acme", 12.5, date(2020, 1, 2)], ["Globex", 7, date(2021, 3, 4)]]
    )
    record = await upload(jobs_client, "vendors.xlsx", body)
    assert record["kind"] == "xlsx"
    job = await wait_job(jobs_client, record["job_id"])
    assert job["state"] == "completed", job["error"]
    rows = await all_rows(jobs_client, record["id"])
    assert [c["name"] for c in rows["columns"]] == ["vendor", "amount", "since"]
    assert rows["columns"][2]["type"] in {"date", "timestamp with time zone"}
    assert [r[0] for r in rows["rows"]] == ["Acme", "Globex"]
    assert [float(r[1]) for r in rows["rows"]] == [12.5, 7.0]
    assert rows["rows"][0][2].startswith("2020-01-02")


def xlsx_bomb() -> bytes:
    """A workbook whose one sheet inflates to 24 MiB from a few dozen KiB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", '<workbook><sheets><sheet name="s" sheetId="1" r:id="rId1"/></sheets></workbook>')
        with archive.open("xl/worksheets/sheet1.xml", "w") as sheet:
            sheet.write(b"<worksheet><sheetData>")
            row = b'<row><c t="inlineStr"><is><t>0</t></is></c></row>' * 1024
            for _ in range(24 * 1024 * 1024 // len(row)):
                sheet.write(row)
            sheet.write(b"</sheetData></worksheet>")
    return buffer.getvalue()


async def test_xlsx_zip_bomb_is_refused_with_a_reason(jobs_client: httpx.AsyncClient) -> None:
    record = await upload(jobs_client, "bomb.xlsx", xlsx_bomb())
    job = await wait_job(jobs_client, record["job_id"])
    assert job["state"] == "failed", job
    assert "zip bomb" in job["error"] and "sheet1.xml" in job["error"], job["error"]


async def test_xlsx_limits_come_from_the_settings(make_stack: object, key: str) -> None:
    stack: Stack = make_stack(xlsx_max_cells=4)  # type: ignore[operator]
    body = xlsx_bytes([["vendor", "amount"], ["Acme", 12.5], ["Globex", 7]])
    async with httpx.AsyncClient(base_url=stack.api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        record = await upload(http, "vendors.xlsx", body)
        job = await wait_job(http, record["job_id"])
    assert job["state"] == "failed", job
    assert "3 rows × 2 columns = 6 cells (limit 4)" in job["error"], job["error"]


async def test_mapping_selects_renames_and_casts(jobs_client: httpx.AsyncClient) -> None:
    record = await upload(jobs_client, "mapped.csv", TYPED_CSV.encode(), process=False)
    mapping = {"select": ["id", "amount", "name"], "rename": {"amount": "price"}, "cast": {"price": "double precision", "id": "text"}}
    job = await wait_job(jobs_client, (await process(jobs_client, record["id"], mapping=mapping))["id"])

    assert job["state"] == "completed", job["error"]
    rows = await all_rows(jobs_client, record["id"])
    assert rows["columns"] == [
        {"name": "id", "type": "text"},
        {"name": "name", "type": "text"},
        {"name": "price", "type": "double precision"},
    ]
    assert rows["rows"][0] == ["1", "alpha", 1.5]


async def test_mapping_naming_a_missing_column_fails_with_the_reason(jobs_client: httpx.AsyncClient) -> None:
    record = await upload(jobs_client, "badmap.csv", TYPED_CSV.encode(), process=False)
    job = await wait_job(
        jobs_client, (await process(jobs_client, record["id"], mapping={"select": ["id", "nope"]}))["id"]
    )
    assert job["state"] == "failed"
    assert "'nope'" in job["error"] and "amount" in job["error"]


async def test_reprocess_replaces_the_dataset_and_refuses_a_second_active_job(jobs_client: httpx.AsyncClient) -> None:
    record = await upload(jobs_client, "again.csv", TYPED_CSV.encode())
    first = await wait_job(jobs_client, record["job_id"])
    assert first["state"] == "completed"

    response = await jobs_client.post(
        "/api/v1/jobs", json={"file_ids": [record["id"]], "options": {"mapping": {"select": ["name"]}}}
    )
    assert response.status_code == 201, response.text
    batch = response.json()
    second = batch["jobs"][0]
    assert second["batch_id"] == batch["batch_id"] and second["id"] != first["id"]
    again = await jobs_client.post("/api/v1/jobs", json={"file_ids": [record["id"]]})
    if (await jobs_client.get(f"/api/v1/jobs/{second['id']}")).json()["state"] in {"pending", "processing"}:
        assert again.status_code == 409, again.text
        assert second["id"] in again.json()["detail"]

    done = await wait_job(jobs_client, second["id"])
    assert done["state"] == "completed"
    rows = await all_rows(jobs_client, record["id"])
    assert rows["columns"] == [{"name": "name", "type": "text"}] and rows["job_id"] == second["id"]
    listed = (await jobs_client.get("/api/v1/jobs", params={"batch_id": batch["batch_id"]})).json()
    assert [j["id"] for j in listed["items"]] == [second["id"]]


async def test_bad_requests_say_what_to_change(jobs_client: httpx.AsyncClient) -> None:
    record = await upload(jobs_client, "opts.csv", TYPED_CSV.encode(), process=False)
    cases = [
        ({"file_ids": []}, 400),
        ({"file_ids": [record["id"]], "options": {"window_rows": 0}}, 400),
        ({"file_ids": [record["id"]], "options": {"encoding": "klingon"}}, 422),
        ({"file_ids": [record["id"]], "options": {"mapping": {"cast": {"id": "money"}}}}, 400),
        ({"file_ids": [str(uuid.uuid4())]}, 404),
    ]
    for body, status in cases:
        response = await jobs_client.post("/api/v1/jobs", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["detail"]
    assert (await jobs_client.get("/api/v1/jobs", params={"state": "nope"})).status_code == 422
    no_table = await jobs_client.get(f"/api/v1/files/{record['id']}/rows")
    assert no_table.status_code == 404 and "POST /api/v1/jobs" in no_table.json()["detail"]


async def test_owners_never_see_each_others_jobs_rows_or_rejects(
    jobs_client: httpx.AsyncClient, other_jobs_client: httpx.AsyncClient
) -> None:
    record = await upload(jobs_client, "private.csv", b"a,b\n1,2\n3\n")
    job = await wait_job(jobs_client, record["job_id"])
    assert job["state"] == "completed" and job["rows_rejected"] == 1

    for path in (f"/api/v1/jobs/{job['id']}", f"/api/v1/jobs/{job['id']}/rejects", f"/api/v1/files/{record['id']}/rows"):
        response = await other_jobs_client.get(path)
        assert response.status_code == 404, (path, response.text)
    assert (await other_jobs_client.post(f"/api/v1/jobs/{job['id']}/cancel")).status_code == 404
    assert (await other_jobs_client.post("/api/v1/jobs", json={"file_ids": [record["id"]]})).status_code == 404
    listed = (await other_jobs_client.get("/api/v1/jobs")).json()
    assert job["id"] not in {j["id"] for j in listed["items"]}


async def test_cancel_stops_within_a_window_and_drops_the_partial_table(
    jobs_client: httpx.AsyncClient, resources: Resources
) -> None:
    record = await upload(jobs_client, "long.csv", numbered_csv(200_000), process=False)
    job = await process(jobs_client, record["id"], window_rows=500, max_concurrency=1)
    await wait_job(jobs_client, job["id"], states={"processing"})

    response = await jobs_client.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 202, response.text
    assert response.json()["cancel_requested"] is True
    done = await wait_job(jobs_client, job["id"])

    assert done["state"] == "cancelled", done
    assert done["rows_ok"] < 200_000
    assert await _dataset_tables(resources, record["id"]) == []
    rows = await jobs_client.get(f"/api/v1/files/{record['id']}/rows")
    assert rows.status_code == 404 and "cancelled" in rows.json()["detail"]
    assert (await jobs_client.post(f"/api/v1/jobs/{job['id']}/cancel")).status_code == 409


async def test_timeout_ends_the_job_as_timed_out(jobs_client: httpx.AsyncClient, resources: Resources) -> None:
    record = await upload(jobs_client, "slow.csv", numbered_csv(200_000), process=False)
    job = await process(jobs_client, record["id"], window_rows=200, max_concurrency=1, timeout_s=1)
    done = await wait_job(jobs_client, job["id"])

    assert done["state"] == "timed_out", done
    assert "timeout" in done["error"]
    assert await _dataset_tables(resources, record["id"]) == []


async def test_deleting_a_file_drops_its_dataset(jobs_client: httpx.AsyncClient, resources: Resources) -> None:
    record = await upload(jobs_client, "gone.csv", TYPED_CSV.encode())
    assert (await wait_job(jobs_client, record["job_id"]))["state"] == "completed"
    assert await _dataset_tables(resources, record["id"]) != []

    assert (await jobs_client.delete(f"/api/v1/files/{record['id']}")).status_code == 204
    assert await _dataset_tables(resources, record["id"]) == []
    rows = await jobs_client.get(f"/api/v1/files/{record['id']}/rows")
    assert rows.status_code == 410 and "deleted" in rows.json()["detail"]


async def test_killed_worker_resumes_without_losing_or_duplicating_rows(
    make_stack: object, key: str, resources: Resources
) -> None:
    stack: Stack = make_stack()  # type: ignore[operator]
    rows = 500_000
    async with httpx.AsyncClient(base_url=stack.api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        record = await upload(http, "big.csv", numbered_csv(rows), process=False)
        job = await process(http, record["id"], window_rows=2000, max_concurrency=2)
        await _wait_rows(http, job["id"], minimum=20_000)

        assert stack.worker is not None
        stack.worker.kill()
        killed_at = (await http.get(f"/api/v1/jobs/{job['id']}")).json()
        assert killed_at["state"] == "processing" and killed_at["rows_ok"] < rows
        stack.start_worker()

        done = await wait_job(http, job["id"], timeout=120)

    assert done["state"] == "completed", done["error"]
    assert (done["rows_ok"], done["rows_rejected"], done["attempts"]) == (rows, 0, 2)
    conn = await asyncpg.connect(resources.settings.sync_database_url)
    try:
        table = f'"{resources.settings.dataset_schema}"."f_{uuid.UUID(record["id"]).hex}"'
        count, distinct, low, high = await conn.fetchrow(f"SELECT count(*), count(DISTINCT _row), min(n), max(n) FROM {table}")
    finally:
        await conn.close()
    assert (count, distinct, low, high) == (rows, rows, 1, rows)


async def test_a_killed_parser_process_fails_its_job_not_the_worker(make_stack: object, key: str) -> None:
    stack: Stack = make_stack()  # type: ignore[operator]
    assert stack.worker is not None
    async with httpx.AsyncClient(base_url=stack.api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        record = await upload(http, "long.csv", numbered_csv(200_000), process=False)
        job = await process(http, record["id"], window_rows=200, max_concurrency=1)
        await wait_job(http, job["id"], states={"processing"})
        # The parser runs in a child of the worker, in a session of its own.
        async with asyncio.timeout(30):
            while not (parsers := _parser_children(stack.worker.process.pid)):
                await asyncio.sleep(0.05)
        parsers[0].kill()
        done = await wait_job(http, job["id"])
        assert done["state"] == "failed", done
        assert "parser process ended unexpectedly" in done["error"], done["error"]

        after = await upload(http, "after.csv", TYPED_CSV.encode())
        assert (await wait_job(http, after["job_id"]))["state"] == "completed"


def _parser_children(pid: int) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "workers.csv_child" in " ".join(child.cmdline()):
                found.append(child)
    return found


async def test_transient_store_failure_is_retried(make_stack: object, key: str, resources: Resources) -> None:
    proxy = FaultProxy(resources.settings.s3_endpoint)
    stack: Stack = make_stack(s3_endpoint=proxy.endpoint)  # type: ignore[operator]
    async with httpx.AsyncClient(base_url=stack.api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        record = await upload(http, "retry.csv", TYPED_CSV.encode())
        # The worker's object store is down: the first attempt fails and is retried with backoff.
        failing = await _wait_error(http, record["job_id"])
        assert "attempt 1 failed" in failing["error"]
        await proxy.start()
        try:
            done = await wait_job(http, record["job_id"], timeout=60)
        finally:
            await proxy.stop()
    assert done["state"] == "completed", done["error"]
    assert done["attempts"] >= 2 and done["rows_ok"] == 3 and done["error"] is None


async def _wait_rows(client: httpx.AsyncClient, job_id: str, *, minimum: int, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while (await client.get(f"/api/v1/jobs/{job_id}")).json()["rows_ok"] < minimum:
            await asyncio.sleep(0.05)


async def _wait_error(client: httpx.AsyncClient, job_id: object, timeout: float = 30) -> dict[str, object]:
    async with asyncio.timeout(timeout):
        while True:
            job = (await client.get(f"/api/v1/jobs/{job_id}")).json()
            if job["error"]:
                return job
            await asyncio.sleep(0.1)


async def _dataset_tables(resources: Resources, file_id: object) -> list[str]:
    conn = await asyncpg.connect(resources.settings.sync_database_url)
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename LIKE $2",
            resources.settings.dataset_schema,
            f"f_{uuid.UUID(str(file_id)).hex}%",
        )
    finally:
        await conn.close()
    return [r["tablename"] for r in rows]


pytestmark = pytest.mark.timeout(300)


async def test_a_job_whose_message_could_not_be_sent_is_sent_again(
    make_stack: object, key: str, resources: Resources
) -> None:
    stack: Stack = make_stack()  # type: ignore[operator]
    # An API whose Redis is unreachable stores the file and its job, but cannot queue the job.
    broken = ApiServer(stack.settings.replace(redis_url="redis://127.0.0.1:9/0"))
    try:
        async with httpx.AsyncClient(base_url=broken.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            record = await upload(http, "unsent.csv", TYPED_CSV.encode())
            pending = (await http.get(f"/api/v1/jobs/{record['job_id']}")).json()
            assert pending["state"] == "pending" and "sent again" in pending["error"]
            done = await wait_job(http, record["job_id"], timeout=60)
    finally:
        broken.stop()
    assert done["state"] == "completed", done["error"]
    assert done["rows_ok"] == 3


async def test_utf16_and_latin1_files_decode(jobs_client: httpx.AsyncClient) -> None:
    text = "name,city\nZoë,Malmö\nJosé,Señora\n"
    for name, body in (("utf16.csv", text.encode("utf-16")), ("latin1.csv", text.encode("latin-1"))):
        record = await upload(jobs_client, name, body)
        job = await wait_job(jobs_client, record["job_id"])
        assert job["state"] == "completed", (name, job["error"])
        rows = await all_rows(jobs_client, record["id"])
        assert [c["name"] for c in rows["columns"]] == ["name", "city"], name
        assert rows["rows"] == [["Zoë", "Malmö"], ["José", "Señora"]], name


async def test_progress_events_are_published_until_the_terminal_one(
    jobs_client: httpx.AsyncClient, stack: Stack, resources: Resources
) -> None:
    record = await upload(jobs_client, "events.csv", numbered_csv(30_000), process=False)
    pubsub = resources.redis.pubsub()
    job_id: str | None = None
    events: list[dict[str, object]] = []
    try:
        await pubsub.psubscribe(job_channel(stack.settings.redis_prefix, "*"))
        job_id = (await process(jobs_client, record["id"], window_rows=500, max_concurrency=1))["id"]
        async with asyncio.timeout(60):
            while not events or events[-1]["type"] not in {"completed", "failed", "cancelled", "timed_out"}:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None and message["channel"].decode().endswith(job_id):
                    events.append(msgspec.json.decode(message["data"]))
    finally:
        await pubsub.aclose()

    assert [e["type"] for e in events][0] == "state" and events[0]["state"] == "processing"
    assert events[-1]["type"] == "completed" and events[-1]["rows_ok"] == 30_000
    progress = [e for e in events if e["type"] == "progress"]
    assert progress and all(0 < e["rows_ok"] < 30_000 for e in progress)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert all(e["job_id"] == job_id and e["bytes_total"] for e in events)


@pytest.fixture
async def own_database() -> AsyncIterator[str]:
    """A database of its own: the purge deletes every finished job past the retention, other tests' too."""
    async with fresh_database(f"sluice_purge_{uuid.uuid4().hex[:10]}") as url:
        yield url


async def test_finished_jobs_are_purged_and_their_tables_kept(resources: Resources, own_database: str) -> None:
    settings = worker_settings(resources.settings.replace(database_url=own_database), f"{resources.settings.redis_prefix}-purge")
    engine = make_engine(own_database, pool_size=1)
    async with make_sessionmaker(engine)() as session:
        _, key = await create_api_key(session, "purged")
        await session.commit()
    await engine.dispose()
    stack = Stack(settings, await asyncio.to_thread(ApiServer, settings), None)
    try:
        await asyncio.to_thread(stack.start_worker, job_retention=1)
        async with httpx.AsyncClient(base_url=stack.api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            record = await upload(http, "old.csv", TYPED_CSV.encode())
            assert (await wait_job(http, record["job_id"]))["state"] == "completed"
            # Past the 1 s retention, run the hourly purge now: put its message on this stack's queue.
            await asyncio.sleep(1.5)
            broker = make_broker(stack.settings)
            broker.enqueue(dramatiq.Message(queue_name=MAINTENANCE_QUEUE, actor_name="purge_old_jobs", args=(), kwargs={}, options={}))
            async with asyncio.timeout(120):
                while (await http.get(f"/api/v1/jobs/{record['job_id']}")).status_code != 404:
                    await asyncio.sleep(0.2)
            rows = await http.get(f"/api/v1/files/{record['id']}/rows")
    finally:
        await asyncio.to_thread(stack.stop)
    assert rows.status_code == 200, rows.text
    assert rows.json()["total"] == 3 and rows.json()["job_id"] is None


async def test_a_job_that_keeps_killing_workers_fails_after_max_retries(
    make_stack: object, key: str, resources: Resources
) -> None:
    stack: Stack = make_stack(worker=False)  # type: ignore[operator]
    async with httpx.AsyncClient(base_url=stack.api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        record = await upload(http, "poison.csv", TYPED_CSV.encode(), process=False)
        job = await process(http, record["id"], max_retries=2)
        # Two attempts already started and never finished, as when the OOM killer takes the worker.
        conn = await asyncpg.connect(resources.settings.sync_database_url)
        try:
            await conn.execute("UPDATE jobs SET state = 'processing', attempts = 2 WHERE id = $1", uuid.UUID(job["id"]))
        finally:
            await conn.close()
        stack.start_worker()
        done = await wait_job(http, job["id"])
    assert done["state"] == "failed" and done["attempts"] == 2
    assert "gave up after 2 attempts" in done["error"] and "killed or out of memory" in done["error"], done["error"]
