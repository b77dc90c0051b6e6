"""Workbooks as real producers write them (openpyxl, pandas, xlsxwriter, LibreOffice): each is
accepted whatever its size and becomes a table holding exactly its rows, with exact types."""

from __future__ import annotations

import datetime
import io
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import openpyxl
import pandas
import pytest
import xlsxwriter

from app.files.detect import HEAD_BYTES
from app.resources import Resources
from db.sql import qualified
from tests.integration.jobs.conftest import wait_job

pytestmark = pytest.mark.timeout(600)

HEADER = ["id", "name", "amount", "day", "stamp", "active"]
TYPES = ["bigint", "text", "numeric", "date", "timestamp without time zone", "boolean"]


def row(i: int) -> list[object]:
    return [
        i,
        f"name {i}, \"quoted\"" if i % 7 == 0 else f"name {i}",
        i / 8 + 0.1,
        datetime.date(2020, 1, 1) + datetime.timedelta(days=i % 3000),
        datetime.datetime(2024, 1, 1, 12, 0, 0) + datetime.timedelta(seconds=i * 37),
        i % 3 == 0,
    ]


def openpyxl_workbook(rows: int) -> bytes:
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Data")
    sheet.append(HEADER)
    for i in range(rows):
        sheet.append(row(i))
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def pandas_workbook(rows: int) -> bytes:
    frame = pandas.DataFrame([row(i) for i in range(rows)], columns=HEADER)
    frame["day"] = pandas.to_datetime(frame["day"]).dt.date
    buffer = io.BytesIO()
    frame.to_excel(buffer, index=False, sheet_name="Data")
    return buffer.getvalue()


def xlsxwriter_workbook(rows: int) -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet = book.add_worksheet("Data")
    day = book.add_format({"num_format": "yyyy-mm-dd"})
    stamp = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    sheet.write_row(0, 0, HEADER)
    for i in range(rows):
        values = row(i)
        sheet.write_row(i + 1, 0, values[:3])
        sheet.write_datetime(i + 1, 3, values[3], day)
        sheet.write_datetime(i + 1, 4, values[4], stamp)
        sheet.write_boolean(i + 1, 5, values[5])
    book.close()
    return buffer.getvalue()


def libreoffice_workbook(rows: int, tmp: Path) -> bytes:
    """An openpyxl workbook opened and saved again as XLSX by LibreOffice Calc."""
    source, out = tmp / "in", tmp / "out"
    source.mkdir()
    (source / "data.xlsx").write_bytes(openpyxl_workbook(rows))
    subprocess.run(
        ["soffice", "--headless", f"-env:UserInstallation=file://{tmp}/profile", "--convert-to", "xlsx",
         "--outdir", str(out), str(source / "data.xlsx")],
        check=True, capture_output=True, timeout=180,
    )
    return (out / "data.xlsx").read_bytes()


async def table_of(resources: Resources, file_id: str) -> tuple[list[str], list[tuple[object, ...]]]:
    conn = await asyncpg.connect(resources.settings.sync_database_url)
    try:
        name = f"f_{file_id.replace('-', '')}"
        types = await conn.fetch(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2"
            " AND column_name <> '_row' ORDER BY ordinal_position",
            resources.settings.dataset_schema,
            name,
        )
        rows = await conn.fetch(f"SELECT * FROM {qualified(resources.settings.dataset_schema, name)} ORDER BY _row")
    finally:
        await conn.close()
    return [t["data_type"] for t in types], [tuple(r.values()) for r in rows]


def expected(rows: int) -> list[tuple[object, ...]]:
    return [
        (i + 2, i, name, Decimal(repr(amount)), day, stamp, active)
        for i in range(rows)
        for (_, name, amount, day, stamp, active) in [row(i)]
    ]


async def check_round_trip(client: httpx.AsyncClient, resources: Resources, name: str, body: bytes, rows: int) -> None:
    response = await client.put(f"/api/v1/files/{name}", content=body)
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["kind"] == "xlsx" and record["size"] == len(body)
    job = await wait_job(client, record["job_id"], timeout=300)
    assert job["state"] == "completed", job["error"]
    assert (job["rows_ok"], job["rows_rejected"]) == (rows, 0)
    types, stored = await table_of(resources, record["id"])
    assert types == TYPES
    assert stored == expected(rows)


async def test_a_several_mib_openpyxl_workbook(jobs_client: httpx.AsyncClient, resources: Resources) -> None:
    body = openpyxl_workbook(80_000)
    # openpyxl writes the workbook part after the sheet data: the head alone cannot tell.
    assert len(body) > 2 * 1024 * 1024 and b"xl/workbook.xml" not in body[:HEAD_BYTES]
    await check_round_trip(jobs_client, resources, "openpyxl.xlsx", body, 80_000)


async def test_a_pandas_to_excel_workbook(jobs_client: httpx.AsyncClient, resources: Resources) -> None:
    body = pandas_workbook(4_000)
    assert len(body) > HEAD_BYTES and b"xl/workbook.xml" not in body[:HEAD_BYTES]
    await check_round_trip(jobs_client, resources, "pandas.xlsx", body, 4_000)


async def test_an_xlsxwriter_workbook(jobs_client: httpx.AsyncClient, resources: Resources) -> None:
    await check_round_trip(jobs_client, resources, "xlsxwriter.xlsx", xlsxwriter_workbook(4_000), 4_000)


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (soffice) is not installed")
async def test_a_libreoffice_workbook(jobs_client: httpx.AsyncClient, resources: Resources, tmp_path: Path) -> None:
    await check_round_trip(jobs_client, resources, "calc.xlsx", libreoffice_workbook(4_000, tmp_path), 4_000)


async def test_a_sheet_over_the_calamine_budget_is_streamed_with_the_same_rows(
    make_stack: object, key: str, resources: Resources
) -> None:
    stack = make_stack(xlsx_calamine_memory=0)  # type: ignore[operator]
    async with httpx.AsyncClient(base_url=stack.api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        await check_round_trip(http, resources, "streamed.xlsx", openpyxl_workbook(4_000), 4_000)
        await check_round_trip(http, resources, "streamed-pandas.xlsx", pandas_workbook(2_000), 2_000)
