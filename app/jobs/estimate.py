"""How long a job will take before it runs: its file's size over the throughput this deployment's
workers measured on recent jobs of the same kind, or a default until they have measured any."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import File, FileKind, FileStatus, Job, JobState

MiB = 1024 * 1024
DEFAULT_BYTES_PER_S = {FileKind.csv: 4.0 * MiB, FileKind.tsv: 4.0 * MiB, FileKind.xlsx: 1.0 * MiB}
"""Until a job of the kind has completed here. A 25 MB typed CSV ran at 3.4 MB/s on the 2-core
development box; XLSX bytes are compressed, so each holds several times more cells."""
RECENT_JOBS = 20
"""Completed jobs of a kind the throughput is measured over, the latest first."""
MEASURED_FROM_BYTES = MiB
"""Smaller jobs are left out: their time is mostly a job's fixed start-up, not bytes."""
MIN_ESTIMATE_S = 1.0
"""What starting any job costs (a parser child, a staging table), so no estimate is below it."""
GZIP = "application/gzip"


async def throughputs(session: AsyncSession, kinds: Iterable[FileKind]) -> dict[FileKind, float]:
    """Bytes per second of each kind's recent completed jobs (all bytes over all seconds), else the default."""
    rates = {}
    for kind in set(kinds):
        recent = (
            select(
                Job.bytes_total.label("size"),
                func.extract("epoch", Job.finished_at - Job.started_at).label("seconds"),
            )
            .join(File, File.id == Job.file_id)
            .where(
                Job.state == JobState.completed,
                Job.finished_at.is_not(None),
                Job.started_at.is_not(None),
                Job.bytes_total >= MEASURED_FROM_BYTES,
                File.kind == kind,
                # Compressed bytes parse at another pace; they would skew the plain files' figure.
                File.content_type.is_distinct_from(GZIP),
            )
            .order_by(Job.finished_at.desc())
            .limit(RECENT_JOBS)
            .subquery()
        )
        size, seconds = (await session.execute(select(func.sum(recent.c.size), func.sum(recent.c.seconds)))).one()
        measured = float(size) / float(seconds) if size and seconds and seconds > 0 else None
        rates[kind] = measured or DEFAULT_BYTES_PER_S[kind]
    return rates


def estimate_s(size: int, kind: FileKind, rates: dict[FileKind, float]) -> float:
    return round(max(MIN_ESTIMATE_S, size / rates[kind]), 1)


async def pending_estimates(session: AsyncSession, jobs: Sequence[Job]) -> dict[uuid.UUID, float]:
    """The estimate of each job that has not started yet; running and finished ones have ``eta_s``."""
    waiting = [job.id for job in jobs if job.state == JobState.pending]
    if not waiting:
        return {}
    sizes = (
        await session.execute(
            select(Job.id, Job.bytes_total, File.kind).join(File, File.id == Job.file_id).where(Job.id.in_(waiting))
        )
    ).all()
    rates = await throughputs(session, (kind for _, _, kind in sizes))
    return {job_id: estimate_s(size, kind, rates) for job_id, size, kind in sizes}


async def file_estimates(
    session: AsyncSession, files: Sequence[File], latest_jobs: Mapping[uuid.UUID, Job]
) -> dict[uuid.UUID, float]:
    """The estimate of each stored CSV/TSV/XLSX file not processed yet: no job, or its latest job pending."""
    waiting = [
        f
        for f in files
        if f.status == FileStatus.stored
        and f.kind in DEFAULT_BYTES_PER_S
        and (f.id not in latest_jobs or latest_jobs[f.id].state == JobState.pending)
    ]
    if not waiting:
        return {}
    rates = await throughputs(session, (f.kind for f in waiting))
    return {f.id: estimate_s(f.size, f.kind, rates) for f in waiting}
