"""Datasets: reading the typed table a processed file became."""

from __future__ import annotations

import uuid

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Principal
from app.errors import Conflict, Gone, NotFound
from app.datasets.schemas import Column, RowsPage
from db.models import File, FileStatus, Job, JobState
from db.settings import Settings
from db.sql import qualified, quote_ident
from workers.contracts import dataset_table

ROW_COLUMN = "_row"
ROWS_STATEMENT_TIMEOUT_MS = 10_000
"""A page of rows is read by the row index; a statement that takes longer than this is cut off."""


class DatasetService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings

    async def rows(self, owner: Principal, file_id: uuid.UUID, *, offset: int, limit: int) -> RowsPage:
        try:
            return await self._rows(owner, file_id, offset=offset, limit=limit)
        except DBAPIError as exc:
            # Reprocessing may rebuild the table with other column types; a connection that read it
            # before holds a prepared plan for the old types, which the driver drops on this error.
            if type(exc.orig).__name__ != "InvalidCachedStatementError":
                raise
            await self.session.rollback()
            return await self._rows(owner, file_id, offset=offset, limit=limit)

    async def _rows(self, owner: Principal, file_id: uuid.UUID, *, offset: int, limit: int) -> RowsPage:
        file = await self.session.scalar(select(File).where(File.id == file_id, File.owner_id == owner.owner_id))
        if file is None:
            raise NotFound(f"no file {file_id}")
        table = dataset_table(file.id)
        relation = qualified(self.settings.dataset_schema, table)
        completed = await self.session.scalar(
            select(Job)
            .where(Job.file_id == file.id, Job.state == JobState.completed)
            .order_by(Job.finished_at.desc())
            .limit(1)
        )
        # The dataset is read as data only: no statement here may write, or run for long.
        await self.session.execute(text("SET LOCAL transaction_read_only TO on"))
        await self.session.execute(
            text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(ROWS_STATEMENT_TIMEOUT_MS)}
        )
        exists = await self.session.scalar(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": relation})
        if not exists:
            raise await self._no_table(file)
        columns = [
            Column(name, type_)
            for name, type_ in await self.session.execute(
                text(
                    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                    " WHERE attrelid = CAST(:name AS regclass) AND attnum > 0 AND NOT attisdropped"
                    " ORDER BY attnum"
                ),
                {"name": relation},
            )
            if name != ROW_COLUMN
        ]
        row = quote_ident(ROW_COLUMN)
        names = "".join(f", {quote_ident(c.name)}" for c in columns)
        result = await self.session.execute(
            text(f"SELECT {row}{names} FROM {relation} ORDER BY {row} OFFSET :o LIMIT :l"),
            {"o": offset, "l": limit},
        )
        records = result.all()
        if completed is not None:
            total = completed.rows_ok
        else:
            # The job that built the table was purged after the retention period; the table stays.
            total = await self.session.scalar(text(f"SELECT count(*) FROM {relation}")) or 0
        return RowsPage(
            file_id=file.id,
            job_id=completed.id if completed is not None else None,
            table=f"{self.settings.dataset_schema}.{table}",
            columns=columns,
            rows=[list(r[1:]) for r in records],
            row_numbers=[r[0] for r in records],
            total=total,
            offset=offset,
            limit=limit,
        )

    async def _no_table(self, file: File) -> Exception:
        if file.status == FileStatus.deleted:
            return Gone(f"file {file.id} was deleted, and its table with it")
        latest = await self.session.scalar(
            select(Job).where(Job.file_id == file.id).order_by(Job.created_at.desc()).limit(1)
        )
        if latest is None:
            return NotFound(
                f"file {file.id} has no table: it was not processed; process it with POST /api/v1/jobs"
            )
        if latest.state in (JobState.pending, JobState.processing):
            return Conflict(
                f"file {file.id} has no table yet: job {latest.id} is {latest.state}"
                f" ({latest.progress:.0f}%); its rows appear when the job completes",
                job_id=str(latest.id),
            )
        reason = f": {latest.error}" if latest.error else ""
        return NotFound(f"file {file.id} has no table: job {latest.id} ended {latest.state}{reason}")
