"""Parser windows through real PostgreSQL COPY and the sink (with its salvage) against the reference.

The in-process property test (tests/unit/parsers/test_csv_differential.py) covers thousands of
files; here a few hundred go through the real database: what the table holds and what is
rejected, with which message, must be what the reference says, for every window size.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from db.sql import qualified, quote_ident
from tests.support.csv_reference import csv_bytes, expected
from workers.parsers import ParseError, open_csv
from workers.sink import DatasetColumn, Progress, Sink

SCHEMA = "csv_reference"
_INT = re.compile(r"[ \t\n\r\v\f]*([+-]?[0-9]+)[ \t\n\r\v\f]*")


class Database:
    """A pool on an event loop of its own, so the synchronous hypothesis test can drive it."""

    def __init__(self, dsn: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool: asyncpg.Pool = self.run(self._pool(dsn))
        self.owner = uuid.uuid4()
        self.run(self._setup())

    def run(self, awaitable):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(awaitable)

    @staticmethod
    async def _pool(dsn: str) -> asyncpg.Pool:
        return await asyncpg.create_pool(dsn, min_size=1, max_size=2)

    async def _setup(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(SCHEMA)}")

    async def new_job(self) -> uuid.UUID:
        """A processing job of a file of its own (a file has one active job at a time)."""
        job_id, file_id = uuid.uuid4(), uuid.uuid4()
        async with self.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO files (id, owner_id, original_filename, filename, size, kind, status, process,"
                " bucket, storage_key) VALUES ($1, $2, 'x.csv', 'x.csv', 0, 'csv', 'stored', false, 'b', 'k')",
                file_id,
                self.owner,
            )
            await conn.execute(
                "INSERT INTO jobs (id, owner_id, batch_id, file_id, state, options, rows_ok, rows_rejected,"
                " bytes_read, bytes_total, progress, rate, attempts, cancel_requested)"
                " VALUES ($1, $2, $1, $3, 'processing', '{}', 0, 0, 0, 0, 0, 0, 1, false)",
                job_id,
                self.owner,
                file_id,
            )
        return job_id

    def close(self) -> None:
        self.run(self.pool.close())
        self.loop.close()


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    yield db
    db.close()


def _bigint_problem(value: str) -> str | None:
    """PostgreSQL's message for a value bigint refuses (the generated values hold no ``_`` or ``0x``)."""
    found = _INT.fullmatch(value)
    if found is None:
        return f'invalid input syntax for type bigint: "{value}"'
    if not -(2**63) <= int(found.group(1)) < 2**63:
        return f'value "{value}" is out of range for type bigint'
    return None


async def _store(database: Database, data: bytes, delimiter: str, header: bool, window_rows: int, bigint: bool):  # type: ignore[no-untyped-def]
    table, windows = open_csv(io.BytesIO(data), window_rows=window_rows, delimiter=delimiter, header=header)
    windows = list(windows)
    if not table.columns:
        return None
    job_id = await database.new_job()
    staging = f"t_{job_id.hex}"
    columns = [
        DatasetColumn(f"c{i}", "bigint" if bigint and i == 0 else "text", pinned=bigint and i == 0)
        for i in range(len(table.columns))
    ]
    sink = Sink(database.pool, SCHEMA, staging, staging, job_id, columns)
    await sink.create()
    async with database.pool.acquire() as conn:
        for window in windows:
            await sink.write(
                conn,
                window.index,
                window.copy_data,
                window.rows_read - len(window.rejects),
                window.rejects,
                window.bytes_read,
                Progress(window.bytes_read, 0.0, 0.0, None),
            )
        names = ", ".join(quote_ident(c.name) for c in columns)
        stored = [
            (r[0], [None if v is None else str(v) for v in r[1:]])
            for r in await conn.fetch(f"SELECT _row, {names} FROM {qualified(SCHEMA, staging)} ORDER BY _row")
        ]
        rejects = [
            (r["row_number"], r["reason"])
            for r in await conn.fetch("SELECT row_number, reason FROM job_rejects WHERE job_id = $1 ORDER BY row_number", job_id)
        ]
        counts = await conn.fetchrow("SELECT rows_ok, rows_rejected FROM jobs WHERE id = $1", job_id)
        await conn.execute(f"DROP TABLE {qualified(SCHEMA, staging)}")
        # Finished, so the workers of other tests (same database) do not take it for a stalled job.
        await conn.execute("UPDATE jobs SET state = 'completed', finished_at = now() WHERE id = $1", job_id)
    return stored, rejects, (counts["rows_ok"], counts["rows_rejected"])


def check(database: Database, data: bytes, delimiter: str, header: bool, window_rows: int, bigint: bool) -> None:
    want = expected(data, delimiter=delimiter, header=header)
    try:
        got = database.run(_store(database, data, delimiter, header, window_rows, bigint))
    except ParseError as error:
        assert str(error) == want.error
        return
    assert want.error is None
    if got is None:
        assert not want.stored and not want.rejects
        return
    stored_rows, rejects, counts = got
    want_stored: list[tuple[int, list[str | None]]] = []
    want_rejects = [(row, reason) for row, reason, _ in want.rejects]
    for row, values in want.stored:
        problem = _bigint_problem(values[0]) if bigint and values[0] is not None else None
        if problem is None:
            if bigint and values[0] is not None:
                values = [str(int(values[0])), *values[1:]]
            want_stored.append((row, values))
        else:
            want_rejects.append((row, f"{problem} (column c0"))
    assert stored_rows == want_stored
    # PostgreSQL's own message for the value, then the column (and what else the sink adds).
    assert [(row, reason[: len(want)]) for (row, reason), (_, want) in zip(rejects, sorted(want_rejects))] == sorted(
        want_rejects
    )
    assert len(rejects) == len(want_rejects)
    assert counts == (len(want_stored), len(want_rejects))


@pytest.mark.parametrize("window_rows", [1, 2, 3, 7, 1000])
def test_salvage_rejects_exactly_the_bad_record(database: Database, window_rows: int) -> None:
    # A multi-line record before the bad one: COPY's "line N" counts physical lines.
    data = b'n,t\n0,a\n1,"two\nlines"\nbad,x\n3,y\n4,z\n'
    check(database, data, ",", True, window_rows, bigint=True)
    stored, rejects, _ = database.run(_store(database, data, ",", True, window_rows, True))
    assert [(row, reason.split(",")[0]) for row, reason in rejects] == [
        (4, 'invalid input syntax for type bigint: "bad" (column c0')
    ]
    assert [row for row, _ in stored] == [2, 3, 5, 6]


def test_quoted_empty_string_and_null_reach_the_table(database: Database) -> None:
    stored, rejects, _ = database.run(_store(database, b'a,b,c\n1,"",x"y\n2,,""\n', ",", True, 1000, False))
    assert rejects == []
    assert stored == [(2, ["1", "", 'x"y']), (3, ["2", None, ""])]


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=csv_bytes(), header=st.booleans(), window_rows=st.sampled_from([1, 2, 3, 7, 1000]), bigint=st.booleans())
@example(case=(b'n,t\n0,a\n1,"two\r\nlines"\nbad,x\n3,"y\rz"\n4,q\n', ","), header=True, window_rows=1000, bigint=True)
@example(case=(b'a,b\r\n"x\r\ny",1\r\n2,3\r\n', ","), header=True, window_rows=2, bigint=True)
def test_copy_and_sink_match_the_reference(
    database: Database, case: tuple[bytes, str], header: bool, window_rows: int, bigint: bool
) -> None:
    data, delimiter = case
    check(database, data, delimiter, header, window_rows, bigint)
