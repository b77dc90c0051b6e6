"""Batches, derived from the jobs that share a ``batch_id``: no table of their own."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Principal
from app.batches.schemas import BatchDetail, BatchJob, BatchSummary
from app.errors import Conflict, NotFound
from app.jobs.service import JobService
from db.models import TERMINAL_JOB_STATES, File, Job, JobState

FAILED = frozenset({JobState.failed, JobState.timed_out})


class BatchService:
    def __init__(self, session: AsyncSession, jobs: JobService) -> None:
        self.session = session
        self.jobs = jobs

    async def get(self, owner: Principal, batch_id: uuid.UUID) -> BatchDetail:
        rows = await self._rows(owner, [batch_id])
        if not rows:
            raise NotFound(f"no batch {batch_id}; a batch id is the batch_id of POST /api/v1/jobs, of a multi-file upload or of a job")
        summary = summarize(batch_id, [job for job, _ in rows], datetime.now(UTC))
        estimates = await self.jobs.estimates([job for job, _ in rows])
        jobs = [
            BatchJob(
                id=job.id,
                file_id=job.file_id,
                filename=filename,
                state=str(job.state),
                progress=100.0 if job.state == JobState.completed else job.progress,
                rows_ok=job.rows_ok,
                rows_rejected=job.rows_rejected,
                bytes_total=job.bytes_total,
                error=job.error,
                cancel_requested=job.cancel_requested,
                estimated_processing_s=estimates.get(job.id),
            )
            for job, filename in rows
        ]
        return BatchDetail(**msgspec.structs.asdict(summary), jobs=jobs)

    async def list(self, owner: Principal, *, offset: int, limit: int) -> tuple[list[BatchSummary], int]:
        """The owner's batches, newest first."""
        mine = Job.owner_id == owner.owner_id
        total = await self.session.scalar(select(func.count(Job.batch_id.distinct())).where(mine)) or 0
        ids = list(
            await self.session.scalars(
                select(Job.batch_id)
                .where(mine)
                .group_by(Job.batch_id)
                .order_by(func.min(Job.created_at).desc(), Job.batch_id)
                .offset(offset)
                .limit(limit)
            )
        )
        by_batch: dict[uuid.UUID, list[Job]] = {i: [] for i in ids}
        for job, _ in await self._rows(owner, ids):
            by_batch[job.batch_id].append(job)
        now = datetime.now(UTC)
        return [summarize(i, jobs, now) for i, jobs in by_batch.items()], total

    async def cancel(self, owner: Principal, batch_id: uuid.UUID) -> BatchDetail:
        """Cancel every unfinished job of the batch through the jobs' own cancel (pending at once,
        running within one window); 409 when every job has already finished."""
        # Ids and states only: the jobs' cancel locks and reads each row itself.
        states = (
            await self.session.execute(
                select(Job.id, Job.state).where(Job.batch_id == batch_id, Job.owner_id == owner.owner_id)
            )
        ).all()
        if not states:
            raise NotFound(f"no batch {batch_id}")
        cancelled = 0
        for job_id, state in states:
            if state in TERMINAL_JOB_STATES:
                continue
            try:
                await self.jobs.cancel(owner, job_id)
            except Conflict:
                continue  # it finished since it was read
            cancelled += 1
        if not cancelled:
            raise Conflict(f"every job of batch {batch_id} has already finished; there is nothing to cancel")
        return await self.get(owner, batch_id)

    async def _rows(self, owner: Principal, batch_ids: Sequence[uuid.UUID]) -> list[tuple[Job, str]]:
        if not batch_ids:
            return []
        rows = await self.session.execute(
            select(Job, File.filename)
            .join(File, File.id == Job.file_id)
            .where(Job.batch_id.in_(batch_ids), Job.owner_id == owner.owner_id)
            .order_by(Job.created_at, Job.id)
            .execution_options(populate_existing=True)
        )
        return [(job, filename) for job, filename in rows]


def summarize(batch_id: uuid.UUID, jobs: Sequence[Job], now: datetime) -> BatchSummary:
    """The batch as its jobs' rows have it; the state reads as the batch event stream's does."""
    states = Counter(job.state for job in jobs)
    finished = all(job.state in TERMINAL_JOB_STATES for job in jobs)
    if not finished:
        state = "pending" if states[JobState.pending] == len(jobs) else "processing"
    elif states[JobState.completed] == len(jobs):
        state = "completed"
    else:
        state = "failed" if any(states[s] for s in FAILED) else "cancelled"
    done = [1.0 if job.state in TERMINAL_JOB_STATES else job.progress / 100 for job in jobs]
    weights = [job.bytes_total for job in jobs]
    total_weight = sum(weights)
    if total_weight:
        fraction = sum(w * d for w, d in zip(weights, done, strict=True)) / total_weight
    else:
        fraction = sum(done) / len(done)
    started = [job.started_at for job in jobs if job.started_at is not None]
    eta_s = None
    if not finished and started and fraction > 0:
        elapsed = (now - min(started)).total_seconds()
        eta_s = round(elapsed * (1 - fraction) / fraction, 1)
    ends = [job.finished_at for job in jobs if job.finished_at is not None]
    return BatchSummary(
        id=batch_id,
        state=state,
        jobs_by_state={str(s): n for s, n in states.items()},
        files_total=len(jobs),
        files_processed=states[JobState.completed],
        files_failed=sum(states[s] for s in FAILED),
        files_cancelled=states[JobState.cancelled],
        rows_ok=sum(job.rows_ok for job in jobs),
        rows_rejected=sum(job.rows_rejected for job in jobs),
        bytes_read=sum(job.bytes_read for job in jobs),
        bytes_total=total_weight,
        progress=round(100 * fraction, 2),
        eta_s=eta_s,
        created_at=min(job.created_at for job in jobs),
        finished_at=max(ends) if finished and ends else None,
    )
