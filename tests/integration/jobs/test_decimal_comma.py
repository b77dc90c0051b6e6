"""Decimal commas end to end: detected in a ``;`` file, forced with ``decimal: ","``, never guessed
in a ``,`` file; values and column types as the rows API shows them."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.jobs.conftest import wait_job
from tests.integration.jobs.test_widening import column_types, start_job, upload

SEMICOLON = 'name;price;qty\na;1,50;3\nb;-3,25;4\nc;1.234,50;5\nd;;6\ne;"0,5";7\n'


async def rows(client: httpx.AsyncClient, file_id: str) -> list[list[Any]]:
    response = await client.get(f"/api/v1/files/{file_id}/rows", params={"limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["rows"]


async def run(client: httpx.AsyncClient, name: str, body: str, **options: object) -> tuple[str, dict[str, Any]]:
    record = await upload(client, name, body.encode())
    job = await wait_job(client, (await start_job(client, record["id"], **options))["id"])
    assert job["state"] == "completed", job["error"]
    return record["id"], job


async def test_decimal_commas_in_a_semicolon_file_are_detected(jobs_client: httpx.AsyncClient) -> None:
    file_id, job = await run(jobs_client, "prices.csv", SEMICOLON)

    assert job["options"]["decimal"] is None
    assert job["options"]["decimal_columns"] == ["price"]
    assert await column_types(jobs_client, file_id) == {"name": "text", "price": "numeric", "qty": "bigint"}
    assert await rows(jobs_client, file_id) == [
        ["a", "1.50", 3],
        ["b", "-3.25", 4],
        ["c", "1234.50", 5],
        ["d", None, 6],
        ["e", "0.5", 7],
    ]


async def test_the_dot_option_keeps_them_text(jobs_client: httpx.AsyncClient) -> None:
    file_id, job = await run(jobs_client, "prices.csv", SEMICOLON, decimal=".")

    assert job["options"]["decimal_columns"] == []
    assert await column_types(jobs_client, file_id) == {"name": "text", "price": "text", "qty": "bigint"}
    assert [r[1] for r in await rows(jobs_client, file_id)] == ["1,50", "-3,25", "1.234,50", None, "0,5"]


async def test_nothing_is_guessed_in_a_comma_separated_file(jobs_client: httpx.AsyncClient) -> None:
    body = 'name,price\na,"1,50"\nb,"-3,25"\n'
    file_id, job = await run(jobs_client, "prices.csv", body)

    assert job["options"]["decimal_columns"] == []
    assert await column_types(jobs_client, file_id) == {"name": "text", "price": "text"}
    assert await rows(jobs_client, file_id) == [["a", "1,50"], ["b", "-3,25"]]


async def test_the_comma_option_reads_them_in_a_comma_separated_file(jobs_client: httpx.AsyncClient) -> None:
    body = 'name,price,qty\na,"1,50",3\nb,"1.234,50",4\nc,7,"2,5"\n'
    file_id, job = await run(jobs_client, "prices.csv", body, decimal=",", window_rows=2)

    assert job["options"]["decimal"] == ","
    assert job["options"]["decimal_columns"] == ["price", "qty"]
    # qty's sample was integers; its later "2,5" is a number too, so bigint widens to numeric.
    assert await column_types(jobs_client, file_id) == {"name": "text", "price": "numeric", "qty": "numeric"}
    assert await rows(jobs_client, file_id) == [["a", "1.50", "3"], ["b", "1234.50", "4"], ["c", "7", "2.5"]]


async def test_a_later_value_that_is_no_number_widens_the_column_to_text(jobs_client: httpx.AsyncClient) -> None:
    body = "name;price\na;1,50\nb;2,25\nc;n/a\nd;1.234,50\n"
    file_id, job = await run(jobs_client, "prices.csv", body, window_rows=2, max_concurrency=1)

    assert job["options"]["decimal_columns"] == ["price"]
    assert job["widenings"] == [{"column": "price", "from_type": "numeric", "to_type": "text", "row_number": 4}]
    assert await column_types(jobs_client, file_id) == {"name": "text", "price": "text"}
    # The value that is no number is the file's text; decimal-comma numbers read back as converted.
    assert [r[1] for r in await rows(jobs_client, file_id)] == ["1.50", "2.25", "n/a", "1234.50"]


async def test_an_unknown_decimal_separator_answers_422(jobs_client: httpx.AsyncClient) -> None:
    record = await upload(jobs_client, "prices.csv", SEMICOLON.encode())
    response = await jobs_client.post("/api/v1/jobs", json={"file_ids": [record["id"]], "options": {"decimal": ";"}})

    assert response.status_code == 422, response.text
    assert "decimal" in response.json()["detail"] and "';'" in response.json()["detail"]
