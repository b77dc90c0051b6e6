"""The dataset sink: typed tables in the dataset schema, filled window by window with COPY.

Each window commits in one transaction with its checkpoint row, its rejects and the job's
counters, so a redelivered job skips committed windows and no row is stored twice or lost.
Window commits may be asynchronous (the pool's choice): a crash loses a window together with its
checkpoint, so it is written again; only the completing commit waits for the disk.
A window PostgreSQL refuses is salvaged row by row (savepoints): the rows that fit are stored,
each one that does not is rejected with PostgreSQL's own message.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncio

import asyncpg
import msgspec

from db.sql import qualified, quote_ident
from workers.contracts import ColumnWidening
from workers.parsers.types import (
    BOOLEAN,
    DATE,
    ROW_COLUMN,
    TEXT,
    TIMESTAMP,
    TIMESTAMPTZ,
    Reject,
    value_type,
    widen,
)

ROW_ERRORS = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)
"""What one record can make PostgreSQL refuse: a value (DataError), or its size ("row is too big")."""
RowError = asyncpg.DataError | asyncpg.ProgramLimitExceededError
_LINE = re.compile(r"\bline (\d+)\b")
_COLUMN = re.compile(r'\bcolumn (\S+)')


@dataclass(frozen=True, slots=True)
class DatasetColumn:
    name: str
    pg_type: str
    keep: bool = True
    """False: loaded as text (so it never rejects a row) and dropped when the job completes."""
    pinned: bool = False
    """The user's type (``mapping.cast``, ``strict_types``): never widened, a value that breaks it rejects its row."""
    words: tuple[str, str] | None = None
    """How a boolean column spells true and false in the file, given back if it is widened to text."""


@dataclass(slots=True)
class WindowResult:
    rows_ok: int
    rows_rejected: int
    cancel_requested: bool
    already_committed: bool = False
    widenings: list[ColumnWidening] = field(default_factory=list)
    """Columns this window widened before it could be written."""


@dataclass(slots=True)
class Progress:
    """What the window transaction writes on the job row besides its own counts."""

    bytes_read: int
    progress: float
    rate: float
    eta_s: float | None


@dataclass(slots=True)
class Sink:
    pool: asyncpg.Pool
    schema: str
    table: str
    """The final table name; the job writes ``staging`` and renames it when it completes."""
    staging: str
    job_id: uuid.UUID
    columns: Sequence[DatasetColumn]
    _copy_columns: list[str] = field(init=False)
    types: list[str] = field(init=False)
    """The staging table's column types now: the planned ones, as widened since."""
    _generation: int = field(init=False, default=0)
    _widening: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self._copy_columns = [ROW_COLUMN, *(c.name for c in self.columns)]
        self.types = [c.pg_type if c.keep else TEXT for c in self.columns]

    async def open(self, fresh: bool) -> None:
        """Create the staging table when ``fresh``, else take the types an earlier attempt left in it."""
        if not fresh:
            async with self.pool.acquire() as conn:
                found = {
                    r["attname"]: _SHORT_TYPES.get(r["type"], r["type"])
                    for r in await conn.fetch(
                        "SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute"
                        " WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
                        self._staging,
                    )
                }
            if found:
                self.types = [found.get(c.name, t) for c, t in zip(self.columns, self.types, strict=True)]
                return
        await self.create()

    async def create(self) -> None:
        """(Re)create the empty staging table; the final table, if any, is left as it is."""
        body = ", ".join(
            [f"{quote_ident(ROW_COLUMN)} bigint NOT NULL"]
            + [f"{quote_ident(c.name)} {t}" for c, t in zip(self.columns, self.types, strict=True)]
        )
        async with self.pool.acquire() as conn:
            # `sluice migrate` makes the schema; the workers' role may not (no CREATE on the database,
            # which even IF NOT EXISTS checks first). Two first jobs may race to create it.
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", self.schema):
                with contextlib.suppress(asyncpg.UniqueViolationError, asyncpg.DuplicateSchemaError):
                    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.schema)}")
            async with conn.transaction():
                await conn.execute(f"DROP TABLE IF EXISTS {self._staging}")
                await conn.execute(f"CREATE TABLE {self._staging} ({body})")
                # Widenings of an attempt that committed no window are found again, not twice.
                await conn.execute("UPDATE jobs SET widenings = '[]' WHERE id = $1", self.job_id)

    async def write(
        self,
        conn: asyncpg.Connection,
        index: int,
        data: bytes,
        rows: int,
        parse_rejects: Sequence[Reject],
        bytes_read: int,
        progress: Progress,
    ) -> WindowResult:
        """Store one window: ``rows`` CSV records in ``data``, each with its row number as first field.

        ``conn`` is one of the job's own connections (held for the whole job: a pool release per
        window would cost a reset round trip each time). A value that does not fit an inferred type
        widens that column first (:meth:`_widen`), then the window is written again.
        """
        widenings: list[ColumnWidening] = []
        while True:
            generation = self._generation
            lossy = self._lossy_column(data)
            if lossy is not None:
                widened = await self._widen(conn, data, generation, lossy, None)
                if widened is not None:
                    widenings += widened
                    continue
            try:
                async with conn.transaction():
                    await self._copy(conn, data)
                    result = await self._checkpoint(conn, index, rows, list(parse_rejects), bytes_read, progress)
                result.widenings = widenings
                return result
            except ROW_ERRORS as exc:
                first = exc
            except asyncpg.UniqueViolationError:
                return WindowResult(0, 0, False, already_committed=True, widenings=widenings)
            widened = await self._widen(conn, data, generation, self._failing_column(first), first)
            if widened is None:
                break
            widenings += widened
        try:
            async with conn.transaction():
                rows_ok, rejects = await self._salvage(conn, _split(data), first)
                rejects = [self._name_pinned_type(r) for r in rejects]
                return await self._checkpoint(conn, index, rows_ok, [*parse_rejects, *rejects], bytes_read, progress)
        except asyncpg.UniqueViolationError:
            return WindowResult(0, 0, False, already_committed=True)

    async def finalize(self) -> tuple[int, int, int] | None:
        """Make the staging table the file's dataset, unless the job was cancelled meanwhile.

        Returns the job's totals (rows ok, rows rejected, bytes read), or ``None`` if cancelled.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit TO on")
            # Sort the index build in memory for tables of a few million rows.
            await conn.execute("SET LOCAL maintenance_work_mem TO '256MB'")
            cancelled = await conn.fetchval("SELECT cancel_requested FROM jobs WHERE id = $1 FOR UPDATE", self.job_id)
            if cancelled is None or cancelled:
                return None
            totals = await conn.fetchrow(
                "SELECT coalesce(sum(rows_ok), 0)::bigint AS ok, coalesce(sum(rows_rejected), 0)::bigint AS rejected,"
                " coalesce(max(bytes_read), 0)::bigint AS bytes FROM job_windows WHERE job_id = $1",
                self.job_id,
            )
            dropped = [c.name for c in self.columns if not c.keep]
            if dropped:
                drops = ", ".join(f"DROP COLUMN {quote_ident(name)}" for name in dropped)
                await conn.execute(f"ALTER TABLE {self._staging} {drops}")
            # Rows arrive out of order from concurrent windows; the index serves reads in file order.
            await conn.execute(f"CREATE INDEX {quote_ident(self.staging + '_row')} ON {self._staging} ({quote_ident(ROW_COLUMN)})")
            await conn.execute(f"DROP TABLE IF EXISTS {self._final}")
            await conn.execute(f"ALTER TABLE {self._staging} RENAME TO {quote_ident(self.table)}")
            await conn.execute(
                "UPDATE jobs SET state = 'completed', rows_ok = $2, rows_rejected = $3, bytes_read = $4,"
                " progress = 100, eta_s = 0, error = NULL, dataset_table = $5, finished_at = now(),"
                " updated_at = now() WHERE id = $1",
                self.job_id,
                totals["ok"],
                totals["rejected"],
                totals["bytes"],
                f"{self.schema}.{self.table}",
            )
            return int(totals["ok"]), int(totals["rejected"]), int(totals["bytes"])

    async def _widen(
        self,
        conn: asyncpg.Connection,
        data: bytes,
        generation: int,
        failing: int | None,
        error: RowError | None,
    ) -> list[ColumnWidening] | None:
        """Widen column ``failing``, and any other this window needs, to the narrowest types holding
        its values; ``None`` when no widening helps (a pinned type, a text column, nothing to change).

        ``error`` is PostgreSQL's refusal of the window; without one, ``failing`` is a column whose
        type would take a value and lose part of it (see :meth:`_lossy_column`).

        One widening at a time per job. ``conn`` holds no transaction here, so the ALTER (ACCESS
        EXCLUSIVE) waits only for windows in flight to commit, and none of them waits for it.
        """
        async with self._widening:
            if self._generation != generation:
                return []  # another window widened meanwhile: try again with the new types first
            if failing is None:
                return None
            records = _records(data)
            changes: dict[int, tuple[str, int]] = {}
            for i, column in enumerate(self.columns):
                if column.pinned or self.types[i] == TEXT:
                    continue
                needed, row = self.types[i], None
                for record in records:
                    value = record[i + 1] if i + 1 < len(record) else ""
                    wider = widen(needed, value_type(value)) if value else needed
                    if wider != needed:
                        needed = wider
                        row = row if row is not None else int(record[0])
                if i == failing and needed == self.types[i] and error is not None:
                    # PostgreSQL refused what the inference rules let through (a quoted "" in a number column).
                    needed, row = TEXT, _failing_row(error, data)
                if needed != self.types[i]:
                    changes[i] = (needed, row if row is not None else _failing_row(error, data))
            widenings = [
                ColumnWidening(self.columns[i].name, self.types[i], new, row) for i, (new, row) in changes.items()
            ]
            clauses = ", ".join(
                f"ALTER COLUMN {quote_ident(self.columns[i].name)} TYPE {new} USING {self._cast(i, new)}"
                for i, (new, _) in changes.items()
            )
            async with conn.transaction():
                await conn.execute(f"ALTER TABLE {self._staging} {clauses}")
                await conn.execute(
                    "UPDATE jobs SET widenings = widenings || $2::jsonb, updated_at = now() WHERE id = $1",
                    self.job_id,
                    msgspec.json.encode(widenings).decode(),
                )
            for i, (new, _) in changes.items():
                self.types[i] = new
            self._generation += 1
            return widenings

    def _name_pinned_type(self, reject: Reject) -> Reject:
        """Say that the type a value broke was pinned (PostgreSQL's message does not always name it)."""
        for column, pg_type in zip(self.columns, self.types, strict=True):
            if column.pinned and reject.reason.endswith(f"(column {column.name})"):
                reason = f"{reject.reason[:-1]}, whose type {pg_type} the job pinned)"
                return msgspec.structs.replace(reject, reason=reason)
        return reject

    def _lossy_column(self, data: bytes) -> int | None:
        """A column whose type would take one of ``data``'s values without an error and lose part of it.

        PostgreSQL's date input drops the time of a timestamp, timestamp input drops an offset, and
        timestamptz input puts a timestamp without one in the session's zone. Only date and time
        values can do that here, so only their shape is searched for (at C speed; nothing at all
        without a ``:`` in the window), and the column of each hit is found by counting fields.
        """
        if not self._temporal or b":" not in data:
            return None
        for hit in _STAMP.finditer(data):
            zoned = hit.group(1) is not None
            if not (self._zoned_lossy if zoned else self._naive_lossy):
                continue
            start = data.rfind(b"\n", 0, hit.start()) + 1
            before = data[start : hit.start()]
            if b'"' in before:
                if before.count(b'"') % 2:
                    return self._lossy_by_value(data)  # the record began on an earlier line
                before = _QUOTED.sub(b"", before)
            index = before.count(b",") - 1  # the row number comes first
            if 0 <= index < len(self.types) and self._loses(index, zoned):
                return index
        return None

    def _lossy_by_value(self, data: bytes) -> int | None:
        for record in _records(data):
            for i, value in enumerate(record[1:]):
                kind = value_type(value) if value and i < len(self.types) else None
                if kind in (TIMESTAMP, TIMESTAMPTZ) and self._loses(i, kind == TIMESTAMPTZ):
                    return i
        return None

    def _loses(self, index: int, zoned: bool) -> bool:
        if self.columns[index].pinned:
            return False
        kind = self.types[index]
        return kind == DATE or (kind == TIMESTAMP and zoned) or (kind == TIMESTAMPTZ and not zoned)

    @property
    def _temporal(self) -> bool:
        return self._zoned_lossy or self._naive_lossy

    @property
    def _zoned_lossy(self) -> bool:
        return any(t in (DATE, TIMESTAMP) and not c.pinned for c, t in zip(self.columns, self.types, strict=True))

    @property
    def _naive_lossy(self) -> bool:
        return any(t in (DATE, TIMESTAMPTZ) and not c.pinned for c, t in zip(self.columns, self.types, strict=True))

    def _failing_column(self, error: RowError) -> int | None:
        """The widenable column PostgreSQL names in ``error`` (COPY's context: ``column <name>: "<value>"``)."""
        context = getattr(error, "context", None) or ""
        found = [
            i
            for i, c in enumerate(self.columns)
            if not c.pinned
            and self.types[i] != TEXT
            and (f"column {c.name}: " in context or context.endswith(f"column {c.name}"))
        ]
        return max(found, key=lambda i: len(self.columns[i].name)) if found else None

    def _cast(self, index: int, new: str) -> str:
        """How the values already stored become ``new``, as close to the file's own text as the old type kept."""
        name, old = quote_ident(self.columns[index].name), self.types[index]
        if old == BOOLEAN and new == TEXT:
            true_word, false_word = self.columns[index].words or ("true", "false")
            return f"CASE WHEN {name} THEN {_literal(true_word)} WHEN NOT {name} THEN {_literal(false_word)} END"
        if old == DATE and new == TIMESTAMPTZ:
            # As COPY reads a bare date into timestamptz: midnight in the session's zone.
            return f"{name}::timestamptz"
        return f"{name}::{new}"

    @property
    def _staging(self) -> str:
        return qualified(self.schema, self.staging)

    @property
    def _final(self) -> str:
        return qualified(self.schema, self.table)

    async def _copy(self, conn: asyncpg.Connection, data: bytes) -> None:
        await conn.copy_to_table(
            self.staging, source=memoryview(data), schema_name=self.schema, columns=self._copy_columns, format="csv"
        )

    async def _checkpoint(
        self,
        conn: asyncpg.Connection,
        index: int,
        rows_ok: int,
        rejects: list[Reject],
        bytes_read: int,
        progress: Progress,
    ) -> WindowResult:
        if rejects:
            await conn.copy_records_to_table(
                "job_rejects",
                records=[(self.job_id, r.row_number, r.reason, r.raw) for r in rejects],
                columns=["job_id", "row_number", "reason", "raw"],
            )
        cancel = await conn.fetchval(
            "WITH checkpoint AS (INSERT INTO job_windows (job_id, index, rows_ok, rows_rejected, bytes_read,"
            " committed_at) VALUES ($1, $8, $2, $3, $9, now()))"
            " UPDATE jobs SET rows_ok = rows_ok + $2, rows_rejected = rows_rejected + $3,"
            " bytes_read = greatest(bytes_read, $4), progress = $5, rate = $6, eta_s = $7, updated_at = now()"
            " WHERE id = $1 RETURNING cancel_requested",
            self.job_id,
            rows_ok,
            len(rejects),
            progress.bytes_read,
            progress.progress,
            progress.rate,
            progress.eta_s,
            index,
            bytes_read,
        )
        return WindowResult(rows_ok, len(rejects), bool(cancel))

    async def _salvage(
        self, conn: asyncpg.Connection, records: list[tuple[int, bytes]], error: RowError
    ) -> tuple[int, list[Reject]]:
        """Store what fits of ``records``, which failed as a whole with ``error``.

        PostgreSQL names the failing line, so the records before the one holding it are stored in one
        COPY, that record is rejected, and the rest is tried again; without a line the records are halved.
        """
        stored = 0
        rejects: list[Reject] = []
        while records:
            at = _failing_record(records, error)
            if at is None:
                ok, more = await self._bisect(conn, records, error)
                return stored + ok, rejects + more
            before, bad, records = records[:at], records[at], records[at + 1 :]
            if before:
                ok, more = await self._try_all(conn, before)
                stored, rejects = stored + ok, rejects + more
            rejects.append(_reject(bad, error))
            if not records:
                break
            try:
                await self._copy_savepoint(conn, records)
            except ROW_ERRORS as exc:
                error = exc
                continue
            stored += len(records)
            break
        return stored, rejects

    async def _try_all(self, conn: asyncpg.Connection, records: list[tuple[int, bytes]]) -> tuple[int, list[Reject]]:
        try:
            await self._copy_savepoint(conn, records)
        except ROW_ERRORS as exc:
            return await self._salvage(conn, records, exc)
        return len(records), []

    async def _bisect(
        self, conn: asyncpg.Connection, records: list[tuple[int, bytes]], error: RowError
    ) -> tuple[int, list[Reject]]:
        if len(records) == 1:
            return 0, [_reject(records[0], error)]
        middle = len(records) // 2
        stored = 0
        rejects: list[Reject] = []
        for half in (records[:middle], records[middle:]):
            ok, more = await self._try_all(conn, half)
            stored, rejects = stored + ok, rejects + more
        return stored, rejects

    async def _copy_savepoint(self, conn: asyncpg.Connection, records: list[tuple[int, bytes]]) -> None:
        async with conn.transaction():
            await self._copy(conn, b"".join(r for _, r in records))


_STAMP = re.compile(
    rb"-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)
"""A date and time as ``value_type`` knows them (from the month on: a literal ``-`` keeps the search fast)."""
_QUOTED = re.compile(rb'"(?:[^"]|"")*"')
_SHORT_TYPES = {"timestamp without time zone": "timestamp", "timestamp with time zone": "timestamptz"}


def _records(data: bytes) -> list[list[str]]:
    """The fields of a window's CSV records (row number first); empty and NULL alike are ``""``."""
    return [r for r in csv.reader(io.StringIO(data.decode("utf-8"), newline="")) if r]


def _failing_row(error: RowError | None, data: bytes) -> int:
    """The row number of the record holding COPY's ``line N``; the window's first row without one."""
    records = _split(data)
    at = _failing_record(records, error) if error is not None else None
    if at is not None:
        return records[at][0]
    return records[0][0] if records else 0


def _literal(word: str) -> str:
    """A boolean word (letters only, checked) as an SQL string literal."""
    if not word.isalpha():
        raise ValueError(f"not a boolean word: {word!r}")
    return f"'{word}'"


def _split(data: bytes) -> list[tuple[int, bytes]]:
    """The records of a window's COPY text as (row number, the record's bytes, unchanged).

    Its every quote opens or closes a quoted value or is doubled inside one (the parser makes it
    so), so a line end ends a record exactly when the quotes before it pair up.
    """
    out: list[tuple[int, bytes]] = []
    lines: list[bytes] = []
    quotes = 0
    for line in data.split(b"\n")[:-1]:
        lines.append(line)
        quotes += line.count(b'"')
        if quotes % 2 == 0:
            record = b"\n".join(lines) + b"\n"
            out.append((int(record[: record.index(b",")]), record))
            lines, quotes = [], 0
    return out


def _failing_record(records: list[tuple[int, bytes]], error: RowError) -> int | None:
    """The index in ``records`` (as one COPY) of the record holding the line ``error`` names.

    COPY counts a record's own line and the line ends inside its quoted values: ``\n`` ones once
    it has seen the first record end (with ``\n``), ``\r`` ones inside that first record.
    """
    found = _LINE.search(getattr(error, "context", None) or "")
    if found is None:
        return None
    line, last = int(found.group(1)), 0
    for index, (_, record) in enumerate(records):
        last += 1 + record.count(b"\r") if index == 0 else record.count(b"\n")
        if line <= last:
            return index
    return None


def _reject(record: tuple[int, bytes], error: RowError) -> Reject:
    row_number, raw = record
    reason = error.args[0] if error.args else str(error)
    found = _COLUMN.search(getattr(error, "context", None) or "")
    if found:
        reason = f"{reason} (column {found.group(1).rstrip(':')})"
    # The stored text is the record as the file had it, without the row number Sluice put in front.
    text = raw.decode("utf-8")[:-1]
    return Reject(row_number, reason, text.split(",", 1)[1] if "," in text else "")
