"""The job runner: one attempt at a job, from its row in PostgreSQL to its dataset table.

An attempt takes a lock per job (so a duplicate message never runs it twice at once), counts
itself on the job row before it starts (so a worker killed by SIGKILL or the OOM killer still
uses up an attempt), skips the windows an earlier attempt committed, writes at most
``max_concurrency`` windows at once, and ends in exactly one terminal state.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import redis.exceptions
import sqlalchemy.exc
import urllib3.exceptions
from dramatiq.errors import Retry
from sqlalchemy import and_, delete, or_, select, update

from db.models import TERMINAL_JOB_STATES, File, FileKind, FileStatus, Job, JobState
from db.sql import qualified
from db.storage import ObjectMissing, StorageError
from workers.contracts import JobEvent, JobOptions, dataset_table, job_channel, process_file_message
from workers.csv_child import CsvChild
from workers.metrics import job_ended, job_started
from workers.middleware import Clients
from workers.parsers.types import ParseError, Table
from workers.plan import Malformed, plan_columns
from workers.progress import publish
from workers.sink import DatasetColumn, Progress, Sink

log = logging.getLogger("sluice.jobs")

PUBLISH_EVERY = 0.25
"""Seconds between progress events of one job (state changes are always published)."""
CANCEL_POLL = 1.0
"""Seconds between checks for a cancel request while no window is committing."""
NEVER_QUEUED_AFTER = timedelta(seconds=10)
"""A pending job with no message this long after it was created had its enqueue fail."""
STALE_AFTER = timedelta(minutes=10)
COPY_CHUNK = 1024 * 1024


class JobStopped(Exception):
    """Ends an attempt in a terminal state other than ``completed``."""

    def __init__(self, state: JobState, reason: str | None) -> None:
        super().__init__(reason or str(state))
        self.state = state
        self.reason = reason


@dataclass(slots=True)
class JobRun:
    """One attempt: what it needs to know about the job and the file, and what it has done."""

    job_id: uuid.UUID
    batch_id: uuid.UUID
    file_id: uuid.UUID
    storage_key: str
    kind: FileKind
    bytes_total: int
    options: JobOptions
    attempts: int
    deadline: float
    """``time.monotonic()`` value at which the job times out."""
    rows_ok: int = 0
    rows_rejected: int = 0
    bytes_read: int = 0
    attempt_rows: int = 0
    attempt_bytes: int = 0
    """``bytes_read`` when this attempt started (earlier attempts' windows are skipped fast)."""
    attempt_started: float = field(default_factory=time.monotonic)
    last_publish: float = 0.0
    cancel: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def staging(self) -> str:
        """The table this job fills; it becomes the file's dataset when the job completes."""
        return f"{dataset_table(self.file_id)}_j{self.job_id.hex[:12]}"

    def event(self, type_: str, state: JobState, **extra: Any) -> JobEvent:
        return JobEvent(
            type=type_,
            job_id=str(self.job_id),
            batch_id=str(self.batch_id),
            file_id=str(self.file_id),
            state=str(state),
            rows_ok=self.rows_ok,
            rows_rejected=self.rows_rejected,
            bytes_read=self.bytes_read,
            bytes_total=self.bytes_total,
            **extra,
        )

    def progress(self) -> Progress:
        elapsed = max(time.monotonic() - self.attempt_started, 1e-6)
        rate = self.attempt_rows / elapsed
        done = min(100.0, 100.0 * self.bytes_read / self.bytes_total) if self.bytes_total else 0.0
        eta = None
        speed = (self.bytes_read - self.attempt_bytes) / elapsed
        if 0 < done < 100 and speed > 0:
            eta = round((self.bytes_total - self.bytes_read) / speed, 1)
        return Progress(self.bytes_read, round(done, 2), round(rate, 1), eta)


def lock_key(job_id: uuid.UUID) -> int:
    return int.from_bytes(job_id.bytes[:8], "big", signed=True)


async def run_job(c: Clients, job_id: uuid.UUID) -> None:
    """Run one attempt of a job, unless another worker holds it or it is already finished."""
    async with c.pool.acquire() as lock_conn:
        if not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(job_id)):
            log.info("job is running elsewhere; this copy of its message is dropped", extra={"job_id": str(job_id)})
            return
        try:
            await _attempt(c, job_id)
        finally:
            with contextlib.suppress(Exception):
                await lock_conn.execute("SELECT pg_advisory_unlock($1)", lock_key(job_id))


async def _attempt(c: Clients, job_id: uuid.UUID) -> None:
    run = await _start(c, job_id)
    if run is None:
        return
    limit = asyncio.timeout(max(run.deadline - time.monotonic(), 0.001))
    try:
        try:
            async with limit:
                await _process(c, run)
        except TimeoutError:
            if not limit.expired():
                raise
            raise JobStopped(
                JobState.timed_out,
                f"the job ran longer than its timeout of {run.options.timeout_s} s; its partial table was dropped",
            ) from None
    except JobStopped as stop:
        await _finish(c, run, stop.state, stop.reason)
    except (Malformed, ParseError) as exc:
        await _finish(c, run, JobState.failed, str(exc))
    except ObjectMissing:
        # The store answered and the object is gone: no attempt can bring it back.
        reason = "the file's bytes are missing from the object store (it lost them); upload the file again"
        await _finish(c, run, JobState.failed, reason)
    except Exception as exc:
        if not is_transient(exc):
            log.exception("job failed", extra={"job_id": str(run.job_id)})
            await _finish(c, run, JobState.failed, f"internal error: {type(exc).__name__}: {exc}")
            return
        if run.attempts >= run.options.max_retries:
            reason = f"gave up after {run.attempts} attempts; the last one failed with: {_describe(exc)}"
            await _finish(c, run, JobState.failed, reason)
            return
        log.warning("job attempt failed; retrying", extra={"job_id": str(run.job_id), "error": _describe(exc)})
        with contextlib.suppress(Exception):
            await _note(c, run, f"attempt {run.attempts} failed: {_describe(exc)}")
        raise Retry(f"transient failure: {_describe(exc)}") from exc


async def _start(c: Clients, job_id: uuid.UUID) -> JobRun | None:
    """Count the attempt on the job row (committed before any work), or end the job here."""
    async with c.sessionmaker() as session:
        job = await session.scalar(select(Job).where(Job.id == job_id).with_for_update())
        if job is None or job.state in TERMINAL_JOB_STATES:
            return None
        file = await session.get(File, job.file_id)
        if file is not None and file.status == FileStatus.scanning and not job.cancel_requested:
            # Not started, nor an attempt counted: the scan stage sends this job again once the file is clean.
            log.info("job waits for its file's malware scan", extra={"job_id": str(job_id), "file_id": str(file.id)})
            return None
        options = msgspec.convert(job.options, JobOptions)
        now = datetime.now(UTC)
        started_at = job.started_at or now
        elapsed = (now - started_at).total_seconds()
        run = JobRun(
            job_id=job.id,
            batch_id=job.batch_id,
            file_id=job.file_id,
            storage_key=file.storage_key if file else "",
            kind=file.kind if file else FileKind.other,
            bytes_total=job.bytes_total,
            options=options,
            attempts=job.attempts,
            deadline=time.monotonic() + options.timeout_s - elapsed,
            rows_ok=job.rows_ok,
            rows_rejected=job.rows_rejected,
            bytes_read=job.bytes_read,
            attempt_bytes=job.bytes_read,
        )
        ending: tuple[JobState, str | None] | None = None
        if job.cancel_requested:
            ending = (JobState.cancelled, None)
        elif file is not None and file.status == FileStatus.quarantined:
            ending = (JobState.failed, file.error)
        elif file is None or file.status != FileStatus.stored:
            ending = (JobState.failed, f"file {job.file_id} is no longer stored")
        elif job.attempts >= options.max_retries:
            last = job.error or "each one stopped without finishing (was the worker killed or out of memory?)"
            ending = (JobState.failed, f"gave up after {job.attempts} attempts; the last error: {last}")
        elif elapsed >= options.timeout_s:
            ending = (JobState.timed_out, f"the job ran longer than its timeout of {options.timeout_s} s")
        if ending is None:
            job.attempts += 1
            job.state = JobState.processing
            job.started_at = started_at
            run.attempts = job.attempts
        await session.commit()
    if ending is not None:
        await _finish(c, run, ending[0], ending[1])
        return None
    await _publish(c, run, run.event("state", JobState.processing, progress=run.progress().progress))
    job_started(run)
    return run


async def _process(c: Clients, run: JobRun) -> None:
    # Asked first, because the CSV parser's child reports any failure to read as a transient one.
    if await asyncio.to_thread(c.store.stat, run.storage_key) is None:
        raise ObjectMissing(run.storage_key)
    async with c.pool.acquire() as conn:
        committed = {
            r["index"] for r in await conn.fetch("SELECT index FROM job_windows WHERE job_id = $1", run.job_id)
        }
    async with _opened(c, run) as (table, windows):
        if not table.columns:
            raise Malformed("the file is empty: it has no records to store")
        await _record_detected(c, run, table)
        # Window 0 carries the inference sample (parsed again on every attempt, committed or not).
        first = await asyncio.to_thread(next, windows, None)
        sample = (first.rows or []) if first is not None else []
        options = run.options
        columns = plan_columns(
            table, options.mapping, sample, strict=options.strict_types, yes_no_boolean=options.yes_no_boolean
        )
        sink = Sink(c.pool, c.settings.dataset_schema, dataset_table(run.file_id), run.staging, run.job_id, columns)
        await sink.open(fresh=not committed)
        if run.kind != FileKind.xlsx:
            await _record_decimal_columns(c, run, table, columns)
        windows = itertools.chain([first] if first is not None else [], windows)
        watcher = asyncio.create_task(_watch_cancel(c, run))
        try:
            await _pipeline(c, run, sink, windows, committed)
        finally:
            watcher.cancel()
    if run.cancel.is_set():
        raise JobStopped(JobState.cancelled, None)
    totals = await sink.finalize()
    if totals is None:
        raise JobStopped(JobState.cancelled, None)
    run.rows_ok, run.rows_rejected, run.bytes_read = totals
    event = run.event("completed", JobState.completed, progress=100.0, rate=run.progress().rate, eta_s=0.0)
    await _publish(c, run, msgspec.structs.replace(event, dataset_table=f"{sink.schema}.{sink.table}"))
    job_ended(run, str(JobState.completed), None)


async def _record_detected(c: Clients, run: JobRun, table: Table) -> None:
    """Show on the job how the parser read the file (detected, or as the options said)."""
    detected = {"encoding": table.encoding, "delimiter": table.delimiter, "header": table.has_header, "sheet": table.sheet}
    async with c.pool.acquire() as conn:
        await conn.execute(
            "UPDATE jobs SET detected = $2::jsonb WHERE id = $1", run.job_id, msgspec.json.encode(detected).decode()
        )


async def _record_decimal_columns(c: Clients, run: JobRun, table: Table, columns: list[DatasetColumn]) -> None:
    """Show on the job's options which columns the parser read with a decimal comma (by their table names)."""
    names = [d.name for t, d in zip(table.columns, columns, strict=True) if t.decimal_comma and d.keep]
    async with c.pool.acquire() as conn:
        await conn.execute(
            "UPDATE jobs SET options = options || jsonb_build_object('decimal_columns', $2::jsonb) WHERE id = $1",
            run.job_id,
            msgspec.json.encode(names).decode(),
        )


async def _pipeline(c: Clients, run: JobRun, sink: Sink, windows: Iterator[Any], committed: set[int]) -> None:
    """Parse on a thread, write up to ``max_concurrency`` windows at once on the event loop,
    each on one of the job's own connections."""
    writing: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []
    async with contextlib.AsyncExitStack() as held:
        idle: asyncio.Queue[asyncpg.Connection] = asyncio.Queue()
        for _ in range(run.options.max_concurrency):
            idle.put_nowait(await held.enter_async_context(c.pool.acquire()))

        async def write(conn: asyncpg.Connection, window: Any) -> None:
            try:
                await _write(c, run, sink, conn, window)
            except Exception as exc:  # noqa: BLE001 - the loop below stops and raises it
                failures.append(exc)
            finally:
                idle.put_nowait(conn)

        try:
            while not run.cancel.is_set() and not failures:
                window = await asyncio.to_thread(next, windows, None)
                if window is None:
                    break
                if window.index in committed:
                    continue
                conn = await idle.get()
                task = asyncio.create_task(write(conn, window))
                writing.add(task)
                task.add_done_callback(writing.discard)
            if writing:
                await asyncio.wait(set(writing))
        finally:
            for task in list(writing):
                task.cancel()
            if writing:
                await asyncio.wait(set(writing))
    if failures:
        raise failures[0]


async def _write(c: Clients, run: JobRun, sink: Sink, conn: asyncpg.Connection, window: Any) -> None:
    stored_rows = window.rows_read - len(window.rejects)
    run.bytes_read = max(run.bytes_read, window.bytes_read)
    result = await sink.write(
        conn, window.index, window.copy_data, stored_rows, window.rejects, window.bytes_read, run.progress()
    )
    for widening in result.widenings:
        p = run.progress()
        event = run.event("widened", JobState.processing, progress=p.progress, rate=p.rate, eta_s=p.eta_s)
        await _publish(c, run, msgspec.structs.replace(event, widening=widening))
        log.info("column widened", extra={"job_id": str(run.job_id), **msgspec.structs.asdict(widening)})
    if result.already_committed:
        return
    run.rows_ok += result.rows_ok
    run.rows_rejected += result.rows_rejected
    run.attempt_rows += result.rows_ok + result.rows_rejected
    if result.cancel_requested:
        run.cancel.set()
    now = time.monotonic()
    if now - run.last_publish >= PUBLISH_EVERY:
        run.last_publish = now
        p = run.progress()
        await _publish(c, run, run.event("progress", JobState.processing, progress=p.progress, rate=p.rate, eta_s=p.eta_s))


async def _watch_cancel(c: Clients, run: JobRun) -> None:
    while not run.cancel.is_set():
        await asyncio.sleep(CANCEL_POLL)
        async with c.pool.acquire() as conn:
            if await conn.fetchval("SELECT cancel_requested FROM jobs WHERE id = $1", run.job_id) is not False:
                run.cancel.set()


@contextlib.asynccontextmanager
async def _opened(c: Clients, run: JobRun) -> Any:
    """The parser's table description and its window iterator over the stored object."""
    from workers import parsers

    options = run.options
    if run.kind == FileKind.xlsx:
        path = await asyncio.to_thread(_download, c, run.storage_key)
        try:
            limits = parsers.XlsxLimits(
                max_uncompressed=c.settings.xlsx_max_uncompressed,
                max_cells=c.settings.xlsx_max_cells,
                calamine_memory=c.settings.xlsx_calamine_memory,
                memory_bytes=c.settings.xlsx_memory,
                timeout_s=c.settings.xlsx_timeout,
            )
            table, windows = await asyncio.to_thread(
                parsers.open_xlsx,
                path,
                window_rows=options.window_rows,
                sheet=options.sheet,
                header=options.header,
                limits=limits,
            )
            try:
                yield table, windows
            finally:
                # Closing the iterator stops the parser's child process; it cannot while a
                # thread is still inside it (a cancelled job), and then the child ends with it.
                with contextlib.suppress(ValueError, AttributeError):
                    windows.close()  # type: ignore[attr-defined]
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
        return
    delimiter = options.delimiter or ("\t" if run.kind == FileKind.tsv else None)
    child = await asyncio.to_thread(
        CsvChild,
        c.settings,
        run.storage_key,
        window_rows=options.window_rows,
        encoding=options.encoding,
        delimiter=delimiter,
        header=options.header,
        decimal=options.decimal,
    )
    try:
        yield child.table, child.windows()
    finally:
        child.close()


def _download(c: Clients, key: str) -> str:
    """Stream the object to a temporary file (calamine needs a seekable file); returns its path."""
    handle, path = tempfile.mkstemp(prefix="sluice-", suffix=".xlsx")
    stream = c.store.open(key)
    try:
        with os.fdopen(handle, "wb") as out:
            shutil.copyfileobj(stream, out, COPY_CHUNK)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        stream.close()
        with contextlib.suppress(Exception):
            stream.release_conn()  # type: ignore[attr-defined]
    return path


async def _finish(c: Clients, run: JobRun, state: JobState, reason: str | None) -> None:
    """End the job in ``state`` (not completed): drop its partial table, record why, tell watchers."""
    async with c.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit TO on")
        await conn.execute(f"DROP TABLE IF EXISTS {qualified(c.settings.dataset_schema, run.staging)}")
        totals = await conn.fetchrow(
            "UPDATE jobs SET state = $2, error = $3, finished_at = now(), updated_at = now(), eta_s = NULL"
            " WHERE id = $1 AND state IN ('pending', 'processing') RETURNING rows_ok, rows_rejected, bytes_read",
            run.job_id,
            str(state),
            reason,
        )
    if totals is None:
        return
    run.rows_ok, run.rows_rejected, run.bytes_read = totals["rows_ok"], totals["rows_rejected"], totals["bytes_read"]
    await _publish(c, run, run.event(str(state), state, error=reason, progress=run.progress().progress))
    job_ended(run, str(state), reason)


async def _note(c: Clients, run: JobRun, message: str) -> None:
    async with c.sessionmaker() as session:
        await session.execute(update(Job).where(Job.id == run.job_id).values(error=message))
        await session.commit()


async def _publish(c: Clients, run: JobRun, event: JobEvent) -> None:
    try:
        await publish(c.redis, job_channel(c.settings.redis_prefix, run.job_id), event)
    except (redis.exceptions.RedisError, OSError) as exc:
        # The job row is the truth; a lost progress event only delays what watchers see.
        log.warning("progress event not published", extra={"job_id": str(run.job_id), "error": str(exc)})


def is_transient(exc: BaseException) -> bool:
    """Failures of a connection to PostgreSQL, Redis or the object store: worth another attempt."""
    if isinstance(exc, (StorageError, redis.exceptions.ConnectionError, asyncpg.PostgresConnectionError)):
        return True
    if isinstance(exc, urllib3.exceptions.HTTPError):
        # The object's stream broke mid-read (reset, incomplete read, read timeout).
        return True
    if isinstance(exc, (asyncpg.InterfaceError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)):
        return True
    if isinstance(exc, asyncpg.exceptions.OperatorInterventionError):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
        return True
    return isinstance(exc, OSError)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


async def resend_pending_jobs(c: Clients) -> None:
    """Send again the message of jobs that never got one, or that idle with no worker holding them."""
    now = datetime.now(UTC)
    stale = max(STALE_AFTER, timedelta(seconds=3 * c.settings.worker_heartbeat_timeout))
    async with c.sessionmaker() as session:
        candidates = list(
            await session.scalars(
                select(Job.id).where(
                    or_(
                        and_(Job.state == JobState.pending, Job.enqueued_at.is_(None), Job.created_at < now - NEVER_QUEUED_AFTER),
                        and_(Job.state.in_((JobState.pending, JobState.processing)), Job.updated_at < now - stale),
                    )
                )
            )
        )
    for job_id in candidates:
        async with c.pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(job_id)):
                continue
            await conn.execute("SELECT pg_advisory_unlock($1)", lock_key(job_id))
        await asyncio.to_thread(c.broker.enqueue, process_file_message(job_id))
        async with c.sessionmaker() as session:
            await session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=now, updated_at=now))
            await session.commit()
        log.info("job message re-sent", extra={"job_id": str(job_id)})


async def purge_old_jobs(c: Clients) -> None:
    """Delete finished jobs past the retention period (with their windows and rejects)."""
    cutoff = datetime.now(UTC) - timedelta(seconds=c.settings.job_retention)
    async with c.sessionmaker() as session:
        result = await session.execute(
            delete(Job).where(Job.state.in_(TERMINAL_JOB_STATES), Job.finished_at < cutoff)
        )
        await session.commit()
    log.info("old jobs purged", extra={"count": result.rowcount})  # type: ignore[attr-defined]

