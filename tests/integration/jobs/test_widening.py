"""Type widening end to end: a later value that does not fit the inferred type widens its column
(the row is stored, never rejected), unless the user pinned the type."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
from httpx_sse import aconnect_sse

from app.resources import Resources
from tests.integration.jobs.conftest import TERMINAL, Stack, wait_job

ROWS = 1500
"""Data rows; the late values sit after row 1100, beyond window 0 even at 1000 rows a window."""
HEADER = "id,grade,code,amount,ratio,day,seen,due,flag,ok"
LATE: dict[str, dict[int, str]] = {
    # column -> {row number in the file (header = row 1): value}
    "grade": {1290: "other", 1390: "other"},
    "code": {1100: "1.5", 1450: "x"},
    "amount": {1250: "2.5"},
    "ratio": {1420: "n/a"},
    "day": {1350: "2014-09-02 13:40:36"},
    "due": {1200: "soon"},
    "flag": {1480: "maybe"},
}
FINAL_TYPES = {
    "id": "bigint",
    "grade": "text",
    "code": "text",
    "amount": "numeric",
    "ratio": "text",
    "day": "timestamp without time zone",
    "seen": "timestamp without time zone",
    "due": "text",
    "flag": "text",
    "ok": "boolean",
}
INFERRED = {"grade": "bigint", "code": "bigint", "amount": "bigint", "ratio": "double precision", "day": "date"}
INFERRED |= {"due": "date", "flag": "boolean"}


def late_csv() -> tuple[bytes, list[list[str]]]:
    """A file whose first rows suggest bigint, double, date and boolean, and whose later rows do not."""
    records: list[list[str]] = []
    for row in range(2, ROWS + 2):
        i = row - 1
        values = {
            "id": str(i),
            "grade": str(9 + i % 4),
            "code": str(i * 7),
            "amount": str(i),
            # Exponent notation as Python and pandas write it: PostgreSQL prints these doubles the same way.
            "ratio": f"{1 + i % 9}.{1 + i % 8}e{'-' if i % 2 else '+'}{16 + i % 9:02d}",
            "day": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "seen": f"2014-09-{1 + i % 28:02d} {i % 24:02d}:40:36",
            "due": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "flag": "yes" if i % 3 else "no",
            "ok": "True" if i % 2 else "False",
        }
        for column, late in LATE.items():
            values[column] = late.get(row, values[column])
        records.append([values[c] for c in HEADER.split(",")])
    body = HEADER + "\n" + "".join(",".join(r) + "\n" for r in records)
    return body.encode(), records


async def upload(client: httpx.AsyncClient, name: str, body: bytes) -> dict[str, Any]:
    response = await client.put(f"/api/v1/files/{name}", params={"process": "false"}, content=body)
    assert response.status_code == 201, response.text
    return response.json()


async def start_job(client: httpx.AsyncClient, file_id: str, **options: object) -> dict[str, Any]:
    response = await client.post("/api/v1/jobs", json={"file_ids": [file_id], "options": options})
    assert response.status_code == 201, response.text
    return response.json()["jobs"][0]


async def table_rows(resources: Resources, file_id: str, columns: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(resources.settings.sync_database_url)
    try:
        table = f'"{resources.settings.dataset_schema}"."f_{uuid.UUID(file_id).hex}"'
        return await conn.fetch(f"SELECT _row, {columns} FROM {table} ORDER BY _row")
    finally:
        await conn.close()


async def column_types(client: httpx.AsyncClient, file_id: str) -> dict[str, str]:
    response = await client.get(f"/api/v1/files/{file_id}/rows", params={"limit": 1})
    assert response.status_code == 200, response.text
    return {c["name"]: c["type"] for c in response.json()["columns"]}


@pytest.mark.parametrize("window_rows", [1, 7, 1000])
async def test_late_values_widen_their_columns_and_every_row_is_stored(
    jobs_client: httpx.AsyncClient, resources: Resources, window_rows: int
) -> None:
    body, records = late_csv()
    record = await upload(jobs_client, "late.csv", body)
    job = await wait_job(
        jobs_client, (await start_job(jobs_client, record["id"], window_rows=window_rows, max_concurrency=4))["id"]
    )

    assert job["state"] == "completed", job["error"]
    assert (job["rows_ok"], job["rows_rejected"]) == (ROWS, 0)
    assert await column_types(jobs_client, record["id"]) == FINAL_TYPES
    stored = await table_rows(
        resources, record["id"], "id, grade, code, amount::text, ratio, day, seen::text, due, flag, ok"
    )
    assert [r["_row"] for r in stored] == list(range(2, ROWS + 2))
    expected = [
        (int(r[0]), r[1], r[2], r[3], r[4], datetime.fromisoformat(r[5]), r[6], r[7], r[8], r[9] == "True")
        for r in records
    ]
    assert [tuple(r.values())[1:] for r in stored] == expected

    widened: dict[str, list[dict[str, Any]]] = {}
    for widening in job["widenings"]:
        widened.setdefault(widening["column"], []).append(widening)
    assert set(widened) == set(LATE)
    for column, steps in widened.items():
        # Each step starts where the last one ended, from the inferred type to the final one.
        assert steps[0]["from_type"] == INFERRED[column]
        assert [s["to_type"] for s in steps[:-1]] == [s["from_type"] for s in steps[1:]]
        assert steps[-1]["to_type"] == FINAL_TYPES[column].replace(" without time zone", "")
        assert {s["row_number"] for s in steps} <= set(LATE[column])
    assert len(widened["amount"]) == 1 and widened["amount"][0]["row_number"] == 1250
    assert widened["day"] == [{"column": "day", "from_type": "date", "to_type": "timestamp", "row_number": 1350}]


async def test_a_pinned_type_rejects_the_rows_that_break_it(
    jobs_client: httpx.AsyncClient, resources: Resources
) -> None:
    body = ("id,grade\n" + "".join(f"{i},{'other' if i in (15, 18) else 9 + i % 4}\n" for i in range(1, 21))).encode()
    record = await upload(jobs_client, "pinned.csv", body)

    for options in ({"mapping": {"cast": {"grade": "bigint"}}}, {"strict_types": True}):
        job = await wait_job(jobs_client, (await start_job(jobs_client, record["id"], window_rows=5, **options))["id"])
        assert job["state"] == "completed", job["error"]
        assert (job["rows_ok"], job["rows_rejected"], job["widenings"]) == (18, 2, [])
        rejects = (await jobs_client.get(f"/api/v1/jobs/{job['id']}/rejects")).json()["items"]
        assert sorted(r["row_number"] for r in rejects) == [16, 19]
        for reject in rejects:
            assert reject["reason"].endswith("(column grade, whose type bigint the job pinned)"), reject
        assert (await column_types(jobs_client, record["id"]))["grade"] == "bigint"

    job = await wait_job(jobs_client, (await start_job(jobs_client, record["id"], window_rows=5))["id"])
    assert (job["rows_ok"], job["rows_rejected"]) == (20, 0)
    # Windows are written concurrently: either late value may be the one that widens the column.
    [widening] = job["widenings"]
    assert (widening["column"], widening["from_type"], widening["to_type"]) == ("grade", "bigint", "text")
    assert widening["row_number"] in (16, 19)
    stored = await table_rows(resources, record["id"], "grade")
    assert [r["grade"] for r in stored] == [line.split(",")[1] for line in body.decode().splitlines()[1:]]


async def test_yes_no_columns_are_boolean_unless_the_job_says_otherwise(
    jobs_client: httpx.AsyncClient, resources: Resources
) -> None:
    body = b"id,member,active\n1,yes,true\n2,no,false\n3,Yes,true\n"
    record = await upload(jobs_client, "yesno.csv", body)

    job = await wait_job(jobs_client, (await start_job(jobs_client, record["id"]))["id"])
    assert job["state"] == "completed", job["error"]
    assert await column_types(jobs_client, record["id"]) == {"id": "bigint", "member": "boolean", "active": "boolean"}
    assert [r["member"] for r in await table_rows(resources, record["id"], "member")] == [True, False, True]

    record = await upload(jobs_client, "yesno-text.csv", body)
    job = await wait_job(jobs_client, (await start_job(jobs_client, record["id"], yes_no_boolean=False))["id"])
    assert job["state"] == "completed", job["error"]
    assert await column_types(jobs_client, record["id"]) == {"id": "bigint", "member": "text", "active": "boolean"}
    assert [r["member"] for r in await table_rows(resources, record["id"], "member")] == ["yes", "no", "Yes"]


async def test_timestamps_without_an_offset_are_stored_as_written(
    jobs_client: httpx.AsyncClient, resources: Resources
) -> None:
    body = b"at,zoned\n2014-09-02 13:40:36,2014-09-02 13:40:36+02:00\n2014-09-03 00:00:01,2014-09-03T00:00:01Z\n"
    record = await upload(jobs_client, "stamps.csv", body)
    job = await wait_job(jobs_client, (await start_job(jobs_client, record["id"]))["id"])

    assert job["state"] == "completed", job["error"]
    assert await column_types(jobs_client, record["id"]) == {
        "at": "timestamp without time zone",
        "zoned": "timestamp with time zone",
    }
    stored = await table_rows(resources, record["id"], "at::text AS at, extract(epoch FROM zoned) AS epoch")
    assert [r["at"] for r in stored] == ["2014-09-02 13:40:36", "2014-09-03 00:00:01"]
    assert [float(r["epoch"]) for r in stored] == [1409658036.0, 1409702401.0]


async def test_the_event_stream_says_which_column_widened(make_stack: Any, key: str) -> None:
    stack: Stack = make_stack(worker=False)
    body = ("n,score\n" + "".join(f"{i},{'n/a' if i == 25 else i * 3}\n" for i in range(1, 41))).encode()
    async with httpx.AsyncClient(base_url=stack.api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        record = await upload(http, "events.csv", body)
        job = await start_job(http, record["id"], window_rows=4, max_concurrency=3)
        seen: list[dict[str, Any]] = []
        async with aconnect_sse(http, "GET", f"/api/v1/jobs/{job['id']}/events") as source:
            starting = asyncio.create_task(asyncio.to_thread(stack.start_worker))
            async for event in source.aiter_sse():
                if not event.data:
                    continue
                seen.append({"event": event.event, **event.json()})
                if event.event in TERMINAL:
                    break
            await starting
        record_after = (await http.get(f"/api/v1/jobs/{job['id']}")).json()

    assert seen[-1]["event"] == "completed"
    widened = [e for e in seen if e["event"] == "widened"]
    change = {"column": "score", "from_type": "bigint", "to_type": "text", "row_number": 26}
    assert [e["widening"] for e in widened] == [change]
    assert widened[0]["state"] == "processing" and widened[0]["job_id"] == job["id"]
    assert record_after["widenings"] == [change]


async def test_a_restarted_attempt_knows_the_widened_types(make_stack: Any, key: str, resources: Resources) -> None:
    stack: Stack = make_stack()
    rows = 300_000
    lines = ["n,amount"]
    for i in range(1, rows + 1):
        amount = "2.5" if i == 3000 else "x" if i == rows - 5 else str(i)
        lines.append(f"{i},{amount}")
    body = ("\n".join(lines) + "\n").encode()
    async with httpx.AsyncClient(base_url=stack.api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        record = await upload(http, "restart.csv", body)
        job = await start_job(http, record["id"], window_rows=2000, max_concurrency=2)
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            current = (await http.get(f"/api/v1/jobs/{job['id']}")).json()
            if current["widenings"] and current["rows_ok"] >= 20_000:
                break
            assert current["state"] not in TERMINAL, current
            assert asyncio.get_running_loop().time() < deadline, current
            await asyncio.sleep(0.05)
        assert stack.worker is not None
        stack.worker.kill()
        assert (await http.get(f"/api/v1/jobs/{job['id']}")).json()["rows_ok"] < rows
        stack.start_worker()
        done = await wait_job(http, job["id"], timeout=120)

    assert done["state"] == "completed", done["error"]
    assert (done["rows_ok"], done["rows_rejected"], done["attempts"]) == (rows, 0, 2)
    assert [(w["from_type"], w["to_type"], w["row_number"]) for w in done["widenings"]] == [
        ("bigint", "numeric", 3001),
        ("numeric", "text", rows - 4),
    ]
    stored = await table_rows(resources, record["id"], "amount")
    assert len(stored) == rows and len({r["_row"] for r in stored}) == rows
    assert [r["amount"] for r in stored] == [line.split(",")[1] for line in lines[1:]]


async def test_a_widening_names_its_own_row_after_a_multi_line_record(
    jobs_client: httpx.AsyncClient, resources: Resources
) -> None:
    # The quoted empty value passes type inference but not COPY into bigint: PostgreSQL's
    # "line N" counts the line break inside row 2, so the row must be found by record, not line.
    body = b'n,t\n1,"two\nlines"\n"",c\n3,d\n4,e\n'
    record = await upload(jobs_client, "lines.csv", body)
    job = await wait_job(jobs_client, (await start_job(jobs_client, record["id"]))["id"])

    assert job["state"] == "completed", job["error"]
    assert (job["rows_ok"], job["rows_rejected"]) == (4, 0)
    assert [(w["column"], w["from_type"], w["to_type"], w["row_number"]) for w in job["widenings"]] == [
        ("n", "bigint", "text", 3)
    ]
    stored = await table_rows(resources, record["id"], "n, t")
    assert [(r["_row"], r["n"], r["t"]) for r in stored] == [
        (2, "1", "two\nlines"), (3, "", "c"), (4, "3", "d"), (5, "4", "e")
    ]


async def test_rows_of_a_table_rebuilt_with_other_types_are_read(jobs_client: httpx.AsyncClient) -> None:
    record = await upload(jobs_client, "retyped.csv", b"id,member\n1,yes\n2,no\n")
    for options in ({}, {"yes_no_boolean": False}):
        job = await wait_job(jobs_client, (await start_job(jobs_client, record["id"], **options))["id"])
        assert job["state"] == "completed", job["error"]
        # Several reads, so the API's pooled connections each prepare (and cache) the query.
        for _ in range(8):
            response = await jobs_client.get(f"/api/v1/files/{record['id']}/rows")
            assert response.status_code == 200, response.text
    assert response.json()["rows"] == [[1, "yes"], [2, "no"]]
