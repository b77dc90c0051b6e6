"""The jobs list filtered to one file (``?file_id=``), and ``detected`` on job records: how the
worker actually read each file (encoding, delimiter, header, sheet), through the real API and worker."""

from __future__ import annotations

import codecs
import io
from typing import Any

import httpx
import xlsxwriter

from tests.integration.jobs.conftest import wait_job
from tests.integration.jobs.test_widening import start_job, upload


async def run(client: httpx.AsyncClient, name: str, body: bytes, **options: object) -> dict[str, Any]:
    record = await upload(client, name, body)
    job = await wait_job(client, (await start_job(client, record["id"], **options))["id"])
    assert job["state"] == "completed", job["error"]
    return job


async def file_jobs(client: httpx.AsyncClient, file_id: str, **params: object) -> dict[str, Any]:
    response = await client.get("/api/v1/jobs", params={"file_id": file_id, **params})
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_list_filters_to_one_files_jobs_newest_first_and_paged(
    jobs_client: httpx.AsyncClient, other_jobs_client: httpx.AsyncClient
) -> None:
    mine = await upload(jobs_client, "mine.csv", b"a,b\n1,2\n")
    neighbour = await upload(jobs_client, "neighbour.csv", b"a,b\n3,4\n")
    first = await wait_job(jobs_client, (await start_job(jobs_client, mine["id"]))["id"])
    await wait_job(jobs_client, (await start_job(jobs_client, neighbour["id"]))["id"])
    second = await wait_job(jobs_client, (await start_job(jobs_client, mine["id"]))["id"])

    page = await file_jobs(jobs_client, mine["id"])
    assert [j["id"] for j in page["items"]] == [second["id"], first["id"]]
    assert page["total"] == 2
    assert {j["file_id"] for j in page["items"]} == {mine["id"]}

    one = await file_jobs(jobs_client, mine["id"], limit=1)
    assert ([j["id"] for j in one["items"]], one["total"], one["limit"]) == ([second["id"]], 2, 1)
    rest = await file_jobs(jobs_client, mine["id"], limit=1, offset=1)
    assert ([j["id"] for j in rest["items"]], rest["total"]) == ([first["id"]], 2)
    assert (await file_jobs(jobs_client, mine["id"], offset=2))["items"] == []
    # Combined with the other filters, not instead of them.
    assert (await file_jobs(jobs_client, mine["id"], state="failed"))["total"] == 0
    assert (await file_jobs(jobs_client, mine["id"], batch_id=first["batch_id"]))["total"] == 1

    # Another owner naming this file sees an empty page, never its jobs.
    assert await file_jobs(other_jobs_client, mine["id"]) == {"items": [], "total": 0, "offset": 0, "limit": 50}


async def test_a_malformed_file_id_is_422(jobs_client: httpx.AsyncClient) -> None:
    for bad in ("not-a-uuid", "1234", "'; DROP TABLE jobs; --"):
        response = await jobs_client.get("/api/v1/jobs", params={"file_id": bad})
        assert response.status_code == 422, response.text
        assert "file_id" in response.json()["detail"]


async def test_a_semicolon_latin1_csv_is_reported_as_read(jobs_client: httpx.AsyncClient) -> None:
    body = "ville;prénom;âge\nZürich;José;41\nGenève;Renée;37\n".encode("latin-1")
    record = await upload(jobs_client, "latin.csv", body)
    pending = await start_job(jobs_client, record["id"])
    assert pending["detected"] is None  # nothing is known until the worker opens the file

    job = await wait_job(jobs_client, pending["id"])
    assert job["state"] == "completed", job["error"]
    detected = job["detected"]
    assert codecs.lookup(detected["encoding"]).name == "iso8859-1"
    assert (detected["delimiter"], detected["header"], detected["sheet"]) == (";", True, None)
    rows = (await jobs_client.get(f"/api/v1/files/{record['id']}/rows")).json()
    assert [c["name"] for c in rows["columns"]] == ["ville", "prénom", "âge"]
    assert rows["rows"][0][:2] == ["Zürich", "José"]
    # The list shows the same record.
    assert (await file_jobs(jobs_client, record["id"]))["items"][0]["detected"] == detected


async def test_a_tsv_and_a_headerless_csv(jobs_client: httpx.AsyncClient) -> None:
    tsv = await run(jobs_client, "table.tsv", b"id\tname\n1\talpha\n2\tbeta\n")
    assert tsv["detected"] == {"encoding": "utf-8", "delimiter": "\t", "header": True, "sheet": None}

    headerless = await run(jobs_client, "numbers.csv", b"1,2,3\n4,5,6\n7,8,9\n")
    assert headerless["detected"] == {"encoding": "utf-8", "delimiter": ",", "header": False, "sheet": None}


async def test_what_the_options_fixed_is_reported_as_used(jobs_client: httpx.AsyncClient) -> None:
    # Sniffing alone would take ";" and utf-8; the options say "|" and latin-1, and that is what was used.
    body = "a|b;c\nx|y;z\n".encode("latin-1")
    job = await run(jobs_client, "piped.csv", body, delimiter="|", encoding="latin-1", header=False)
    assert codecs.lookup(job["detected"]["encoding"]).name == "iso8859-1"
    assert (job["detected"]["delimiter"], job["detected"]["header"]) == ("|", False)


def workbook(sheets: dict[str, list[list[object]]]) -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    for name, rows in sheets.items():
        sheet = book.add_worksheet(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                sheet.write(r, c, value)
    book.close()
    return buffer.getvalue()


async def test_an_xlsx_reports_the_sheet_it_read(jobs_client: httpx.AsyncClient) -> None:
    body = workbook({"Notes": [["read me"], ["first"]], "Prix 2024": [["item", "price"], ["tea", 2.5], ["cake", 4]]})

    named = await run(jobs_client, "book.xlsx", body, sheet="Prix 2024")
    assert named["detected"] == {"encoding": None, "delimiter": None, "header": True, "sheet": "Prix 2024"}

    default = await run(jobs_client, "book.xlsx", body)
    assert default["detected"]["sheet"] == "Notes"

    headerless = await run(jobs_client, "numbers.xlsx", workbook({"Data": [[1, 2], [3, 4], [5, 6]]}))
    assert headerless["detected"] == {"encoding": None, "delimiter": None, "header": False, "sheet": "Data"}
