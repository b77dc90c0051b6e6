"""Jobs: creating and sending them to the workers, reading, cancelling, and listing their rejects."""

from __future__ import annotations

import codecs
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
from anyio import to_thread
from dramatiq import Broker
from redis.asyncio import Redis
from sqlalchemy import Select, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Principal
from app.errors import Conflict, NotFound, Unprocessable
from app.jobs.estimate import pending_estimates
from app.jobs.schemas import JobOptionsIn, JobsIn
from app.quotas.service import QuotaService
from db.models import TERMINAL_JOB_STATES, File, FileKind, FileStatus, Job, JobReject, JobState
from db.settings import Settings
from db.migrate import DROP_DATASET
from db.sql import column_name_problem, quote_ident
from workers.contracts import ColumnMapping, JobEvent, JobOptions, job_channel, process_file_message, scan_file_message
from workers.progress import publish

log = logging.getLogger("sluice.jobs")
PROCESSABLE = frozenset({FileKind.csv, FileKind.tsv, FileKind.xlsx})
ACTIVE_STATES = (JobState.pending, JobState.processing)
ONE_ACTIVE_JOB = "uq_jobs_one_active_per_file"
"""The partial unique index that keeps a file to one pending or processing job."""


def check_mapping(mapping: ColumnMapping | None) -> None:
    """Refuse the mapping names that can be judged without the file.

    New names (rename targets) must be column names as the header sanitiser makes them, so what
    reaches the table is what was asked for. Names that must match one of the file's columns
    (select, rename and cast keys) are matched by the worker, which fails the job naming them.
    """
    if mapping is None:
        return
    keys = [("select", k) for k in mapping.select or []]
    keys += [("rename", k) for k in mapping.rename] + [("cast", k) for k in mapping.cast]
    for where, key in keys:
        if "\x00" in key:
            raise Unprocessable(f"options.mapping.{where} names column {key!r}, with a NUL character no column has")
    if mapping.select == []:
        raise Unprocessable("options.mapping.select is empty; list the columns to keep, or leave select out to keep all")
    for key, new in mapping.rename.items():
        problem = column_name_problem(new)
        if problem is not None:
            raise Unprocessable(f"options.mapping.rename[{key!r}]: {problem}", value=new)
    targets = list(mapping.rename.values())
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        raise Unprocessable(
            f"options.mapping.rename gives several columns the name {', '.join(map(repr, repeated))}; rename them apart"
        )


def resolve_options(given: JobOptionsIn, settings: Settings) -> JobOptions:
    """The options a job runs with: what the client gave, the server's defaults for the rest."""
    if given.encoding is not None:
        try:
            codecs.lookup(given.encoding)
        except LookupError:
            raise Unprocessable(
                f"options.encoding {given.encoding!r} is not an encoding Python knows; try utf-8, utf-16 or latin-1"
            ) from None
    check_mapping(given.mapping)
    if given.decimal not in (None, ".", ","):
        shown = given.decimal if len(given.decimal) <= 20 else given.decimal[:20] + "…"
        raise Unprocessable(
            f"options.decimal {shown!r} is not a decimal separator: give \".\" or \",\", or leave it out to detect it"
        )
    return JobOptions(
        window_rows=given.window_rows or settings.window_rows,
        max_concurrency=given.max_concurrency or settings.max_concurrency,
        timeout_s=given.timeout_s or settings.job_timeout,
        max_retries=given.max_retries or settings.job_max_retries,
        delimiter=given.delimiter,
        encoding=given.encoding,
        header=given.header,
        sheet=given.sheet,
        mapping=given.mapping,
        strict_types=given.strict_types,
        yes_no_boolean=given.yes_no_boolean,
        decimal=given.decimal,  # type: ignore[arg-type]  # checked above: "." or ","
    )


class JobService:
    def __init__(self, session: AsyncSession, settings: Settings, broker: Broker, redis: Redis) -> None:
        self.session = session
        self.settings = settings
        self.broker = broker
        self.redis = redis
        self.to_scan: list[uuid.UUID] = []
        """Files this request stored that wait for the malware scanner; ``send`` asks a worker to scan them."""

    def add_for_file(self, file: File, batch_id: uuid.UUID | None = None) -> Job | None:
        """The automatic job of a file about to be committed as stored, in the same transaction.

        With a scanner (``SLUICE_SCANNER``) the file is committed as ``scanning`` instead: its job
        waits, pending, until the scan finds the file clean. Files of one multi-file request share
        ``batch_id``, so the request can be followed as one batch.
        """
        if self.settings.scanner and file.status == FileStatus.stored:
            file.status = FileStatus.scanning
            self.to_scan.append(file.id)
        if not file.process or file.kind not in PROCESSABLE or file.status not in (FileStatus.stored, FileStatus.scanning):
            return None
        return self._new_job(file, batch_id or uuid.uuid4(), resolve_options(JobOptionsIn(), self.settings))

    async def submit(self, owner: Principal, request: JobsIn) -> tuple[uuid.UUID, list[Job]]:
        """(Re)process files as one batch; all files are checked before any job is created."""
        options = resolve_options(request.options, self.settings)
        wanted = list(dict.fromkeys(request.file_ids))
        files = {
            f.id: f
            for f in await self.session.scalars(
                select(File).where(File.id.in_(wanted), File.owner_id == owner.owner_id)
            )
        }
        missing = [str(i) for i in wanted if i not in files]
        if missing:
            raise NotFound(f"no file {', '.join(missing)}")
        for file in files.values():
            if file.status == FileStatus.quarantined:
                raise Conflict(f"file {file.id} is quarantined: the malware scanner found {file.scan_signature}; it is never processed")
            if file.status == FileStatus.scanning:
                raise Conflict(f"file {file.id} is being scanned for malware; process it once it is stored")
            if file.status != FileStatus.stored:
                raise Conflict(f"file {file.id} is {file.status}; only stored files can be processed")
            if file.kind not in PROCESSABLE:
                raise Unprocessable(f"file {file.id} is not CSV, TSV or XLSX; it cannot be processed")
        busy = await self.session.scalar(
            select(Job).where(Job.file_id.in_(wanted), Job.state.in_(ACTIVE_STATES)).limit(1)
        )
        if busy is not None:
            raise Conflict(
                f"file {busy.file_id} already has job {busy.id} ({busy.state}); wait for it or cancel it first",
                job_id=str(busy.id),
            )
        await QuotaService(self.session, self.settings).admit_jobs(owner.owner_id, len(wanted))
        batch_id = uuid.uuid4()
        jobs = [self._new_job(files[i], batch_id, options) for i in wanted]
        try:
            await self.session.commit()
        except IntegrityError as exc:
            # Another request started a job for one of these files since the check above.
            await self.session.rollback()
            if ONE_ACTIVE_JOB not in str(exc.orig):
                raise
            raise Conflict("one of these files got a job from another request just now; wait for it or cancel it first") from None
        await self.send(jobs)
        return batch_id, jobs

    def _new_job(self, file: File, batch_id: uuid.UUID, options: JobOptions) -> Job:
        job = Job(
            id=uuid.uuid4(),
            owner_id=file.owner_id,
            batch_id=batch_id,
            file_id=file.id,
            state=JobState.pending,
            options=msgspec.to_builtins(options),
            bytes_total=file.size,
            rows_ok=0,
            rows_rejected=0,
            bytes_read=0,
            progress=0.0,
            rate=0.0,
            attempts=0,
            cancel_requested=False,
        )
        self.session.add(job)
        return job

    async def send(self, jobs: Sequence[Job]) -> None:
        """Send each job's message; a job whose message could not be sent says so, and the
        workers' periodic ``resend_pending_jobs`` sends it again. Files waiting for the scanner get
        a scan message instead (a lost one is sent again by ``rescan_waiting_files``); the scan
        sends their jobs once they are clean."""
        scanning, self.to_scan = self.to_scan, []
        for file_id in scanning:
            try:
                await to_thread.run_sync(self.broker.enqueue, scan_file_message(file_id))
            except Exception as exc:  # noqa: BLE001 - the file waits in scanning; the workers' sweep sends it
                log.warning("could not enqueue scan", extra={"file_id": str(file_id), "error": str(exc)})
        for job in jobs:
            if job.file_id in scanning:
                job.enqueued_at = datetime.now(UTC)
                continue
            try:
                await to_thread.run_sync(self.broker.enqueue, process_file_message(job.id))
            except Exception as exc:  # noqa: BLE001 - any broker failure leaves the job pending, with a reason
                log.warning("could not enqueue job", extra={"job_id": str(job.id), "error": str(exc)})
                job.error = f"the job could not be queued yet ({exc}); it will be sent again automatically"
            else:
                job.enqueued_at = datetime.now(UTC)
        await self.session.commit()

    async def get(self, owner: Principal, job_id: uuid.UUID) -> Job:
        job = await self.session.scalar(select(Job).where(Job.id == job_id, Job.owner_id == owner.owner_id))
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job

    async def list(
        self,
        owner: Principal,
        *,
        offset: int,
        limit: int,
        state: str | None,
        batch_id: uuid.UUID | None,
        file_id: uuid.UUID | None = None,
    ) -> tuple[list[Job], int]:
        where = [Job.owner_id == owner.owner_id]
        if state is not None:
            if state not in JobState.__members__:
                raise Unprocessable(f"state must be one of {', '.join(JobState)}, not {state!r}")
            where.append(Job.state == JobState(state))
        if batch_id is not None:
            where.append(Job.batch_id == batch_id)
        if file_id is not None:
            # Filtered within the owner's jobs: another owner's file id gives an empty page.
            where.append(Job.file_id == file_id)
        total = await self.session.scalar(select(func.count()).select_from(Job).where(*where)) or 0
        rows = await self.session.scalars(
            select(Job).where(*where).order_by(Job.created_at.desc(), Job.id).offset(offset).limit(limit)
        )
        return list(rows), total

    async def estimates(self, jobs: Sequence[Job]) -> dict[uuid.UUID, float]:
        """Seconds each pending job should take once it runs (app/jobs/estimate.py)."""
        return await pending_estimates(self.session, jobs)

    async def cancel(self, owner: Principal, job_id: uuid.UUID) -> Job:
        """A pending job is cancelled at once; a running one is asked to stop (within one window)."""
        return await self._cancel(select(Job).where(Job.id == job_id, Job.owner_id == owner.owner_id), job_id)

    async def cancel_any(self, job_id: uuid.UUID) -> Job:
        """``cancel`` for an admin: the job of any owner."""
        return await self._cancel(select(Job).where(Job.id == job_id), job_id)

    async def _cancel(self, query: Select[tuple[Job]], job_id: uuid.UUID) -> Job:
        job = await self.session.scalar(query.with_for_update())
        if job is None:
            raise NotFound(f"no job {job_id}")
        if job.state in TERMINAL_JOB_STATES:
            raise Conflict(f"job {job_id} is already {job.state}; there is nothing to cancel")
        job.cancel_requested = True
        if job.state == JobState.pending:
            job.state = JobState.cancelled
            job.finished_at = datetime.now(UTC)
        await self.session.commit()
        if job.state == JobState.cancelled:
            await self._publish_terminal(job)
        return job

    async def _publish_terminal(self, job: Job) -> None:
        event = JobEvent(
            type=str(job.state),
            job_id=str(job.id),
            batch_id=str(job.batch_id),
            file_id=str(job.file_id),
            state=str(job.state),
            rows_ok=job.rows_ok,
            rows_rejected=job.rows_rejected,
            bytes_read=job.bytes_read,
            bytes_total=job.bytes_total,
            progress=job.progress,
            error=job.error,
        )
        try:
            await publish(self.redis, job_channel(self.settings.redis_prefix, job.id), event)
        except Exception as exc:  # noqa: BLE001 - the job row is the truth; the event is a courtesy
            log.warning("could not publish job event", extra={"job_id": str(job.id), "error": str(exc)})

    async def rejects(
        self, owner: Principal, job_id: uuid.UUID, *, offset: int, limit: int
    ) -> tuple[list[JobReject], int]:
        job = await self.get(owner, job_id)
        total = await self.session.scalar(
            select(func.count()).select_from(JobReject).where(JobReject.job_id == job.id)
        )
        rows = await self.session.scalars(
            select(JobReject)
            .where(JobReject.job_id == job.id)
            .order_by(JobReject.row_number, JobReject.id)
            .offset(offset)
            .limit(limit)
        )
        return list(rows), total or 0

    async def forget_file(self, file: File) -> None:
        """Before a file is deleted: stop its jobs and drop its dataset (committed by the caller)."""
        active = await self.session.scalars(
            select(Job).where(Job.file_id == file.id, Job.state.in_(ACTIVE_STATES)).with_for_update()
        )
        now = datetime.now(UTC)
        for job in active:
            job.cancel_requested = True
            if job.state == JobState.pending:
                job.state = JobState.cancelled
                job.finished_at = now
        # The dataset tables belong to the workers' role; this function drops the file's one, and only it.
        await self.session.execute(text(f"SELECT public.{quote_ident(DROP_DATASET)}(:id)"), {"id": file.id})
