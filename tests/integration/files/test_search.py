"""Searching and filtering the files list (`GET /api/v1/files?q=&kind=`) through the real API."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from tests.integration.files.test_upload import xlsx_bytes

CSV = b"id,name\n1,alpha\n2,beta\n"
TSV = b"id\tname\n1\talpha\n2\tbeta\n"


async def store(client: httpx.AsyncClient, name: str, body: bytes = CSV) -> dict:
    response = await client.put(f"/api/v1/files/{quote(name, safe='')}", params={"process": "false"}, content=body)
    assert response.status_code == 201, response.text
    return response.json()


async def listed(client: httpx.AsyncClient, **params: str | int) -> tuple[list[str], int]:
    response = await client.get("/api/v1/files", params=params)
    assert response.status_code == 200, response.text
    page = response.json()
    return sorted(f["original_filename"] for f in page["items"]), page["total"]


@pytest.fixture
async def shelf(client: httpx.AsyncClient) -> dict[str, dict]:
    """One owner's files, with names that wildcards and case would confuse."""
    names = {
        "Sales-2024.csv": CSV,
        "sales-2025.csv": CSV,
        "100%_done.csv": CSV,
        "100x-done.csv": CSV,
        "reports/2024/q3.csv": CSV,
        "C:\\exports\\ledger.csv": CSV,
        "inventory.tsv": TSV,
        "vendors.xlsx": xlsx_bytes(),
    }
    return {name: await store(client, name, body) for name, body in names.items()}


async def test_search_is_a_case_insensitive_substring_of_either_name(client: httpx.AsyncClient, shelf: dict[str, dict]) -> None:
    assert await listed(client, q="SALES") == (["Sales-2024.csv", "sales-2025.csv"], 2)
    assert await listed(client, q="es-202") == (["Sales-2024.csv", "sales-2025.csv"], 2)
    # Only the original name keeps the path: the stored name is "q3.csv".
    assert shelf["reports/2024/q3.csv"]["filename"] == "q3.csv"
    assert await listed(client, q="reports/2024") == (["reports/2024/q3.csv"], 1)
    assert await listed(client, q="Q3.CSV") == (["reports/2024/q3.csv"], 1)


async def test_no_match_is_an_empty_page(client: httpx.AsyncClient, shelf: dict[str, dict]) -> None:
    response = await client.get("/api/v1/files", params={"q": "nothing-called-this"})
    assert response.status_code == 200
    assert response.json()["items"] == []
    assert response.json()["total"] == 0


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("%", ["100%_done.csv"]),
        ("_", ["100%_done.csv"]),
        ("100%", ["100%_done.csv"]),
        ("0_d", []),
        ("%_", ["100%_done.csv"]),
        ("\\", ["C:\\exports\\ledger.csv"]),
        ("\\ledger", ["C:\\exports\\ledger.csv"]),
        ("\\%", []),
    ],
)
async def test_wildcard_characters_are_taken_literally(
    client: httpx.AsyncClient, shelf: dict[str, dict], q: str, expected: list[str]
) -> None:
    assert await listed(client, q=q) == (expected, len(expected))


async def test_kind_filter_and_search_combine(client: httpx.AsyncClient, shelf: dict[str, dict]) -> None:
    assert {f["kind"] for f in shelf.values()} == {"csv", "tsv", "xlsx"}
    assert await listed(client, kind="tsv") == (["inventory.tsv"], 1)
    assert await listed(client, kind="xlsx") == (["vendors.xlsx"], 1)
    assert await listed(client, kind="other") == ([], 0)
    assert (await listed(client, kind="csv"))[1] == 6
    assert await listed(client, kind="csv", q="done") == (["100%_done.csv", "100x-done.csv"], 2)
    assert await listed(client, kind="tsv", q="done") == ([], 0)


async def test_total_counts_the_filtered_set_across_pages(client: httpx.AsyncClient, shelf: dict[str, dict]) -> None:
    first = (await client.get("/api/v1/files", params={"q": "csv", "limit": 2})).json()
    second = (await client.get("/api/v1/files", params={"q": "csv", "limit": 2, "offset": 5})).json()
    assert first["total"] == second["total"] == 6
    assert len(first["items"]) == 2
    assert [f["original_filename"] for f in second["items"]] == ["Sales-2024.csv"]


async def test_deleted_files_are_found_only_with_status_deleted(client: httpx.AsyncClient, shelf: dict[str, dict]) -> None:
    gone = shelf["sales-2025.csv"]
    assert (await client.delete(f"/api/v1/files/{gone['id']}")).status_code == 204
    assert await listed(client, q="sales") == (["Sales-2024.csv"], 1)
    assert await listed(client, q="sales", status="deleted") == (["sales-2025.csv"], 1)
    assert await listed(client, q="sales", status="failed") == ([], 0)


async def test_other_owners_files_never_appear(
    client: httpx.AsyncClient, other_client: httpx.AsyncClient, shelf: dict[str, dict]
) -> None:
    theirs = await store(other_client, "sales-secret.csv")
    await store(other_client, "their.tsv", TSV)
    assert await listed(client, q="sales") == (["Sales-2024.csv", "sales-2025.csv"], 2)
    assert await listed(client, q="secret") == ([], 0)
    assert await listed(client, kind="tsv") == (["inventory.tsv"], 1)
    assert await listed(other_client, q="sales") == (["sales-secret.csv"], 1)
    assert await listed(other_client, q=theirs["id"][:8]) == ([], 0)
    assert await listed(other_client, kind="xlsx") == ([], 0)


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"kind": "pdf"}, "'kind'"),
        ({"kind": "CSV"}, "'kind'"),
        ({"q": "x" * 201}, "'q'"),
        ({"q": "a\x00b"}, "'q'"),
    ],
)
async def test_bad_parameters_answer_422_naming_them(
    client: httpx.AsyncClient, params: dict[str, str], named: str
) -> None:
    response = await client.get("/api/v1/files", params=params)
    assert response.status_code == 422, response.text
    assert named in response.json()["detail"]


async def test_the_longest_search_allowed_is_answered(client: httpx.AsyncClient, shelf: dict[str, dict]) -> None:
    assert await listed(client, q="x" * 200) == ([], 0)
    assert (await listed(client, q=""))[1] == len(shelf)


@pytest.mark.parametrize("raw", ["%FF%FE", "%ED%A0%80", "%C0%AF"])
async def test_a_search_that_is_not_utf8_answers_a_4xx_or_nothing(client: httpx.AsyncClient, raw: str) -> None:
    response = await client.get(f"/api/v1/files?q={raw}")
    assert response.status_code in (200, 400, 422), response.text
    if response.status_code == 200:
        assert response.json()["total"] == 0
