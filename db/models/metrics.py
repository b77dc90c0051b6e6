"""The hourly rollup behind the operations dashboard: one row per hour, kept for
``SLUICE_METRICS_RETENTION`` (finished jobs themselves are deleted after ``SLUICE_JOB_RETENTION``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, Select, and_, func, select, text, true
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base
from db.models.files import File, FileStatus
from db.models.jobs import Job, JobState
from db.models.uploads import SessionState, UploadSession

UPLOAD_FAILED_SESSIONS = (SessionState.failed, SessionState.expired)
"""Chunked and tus uploads that never became a file (an abort is the client's choice, not a failure)."""
JOB_FAILED = (JobState.failed, JobState.timed_out)


class HourlyMetrics(Base):
    """What happened in one hour (UTC), counted when it happened: files by ``stored_at``, failed
    uploads by when they failed, jobs by ``finished_at``."""

    __tablename__ = "hourly_metrics"

    hour: Mapped[datetime] = mapped_column(primary_key=True)
    """Start of the hour."""
    uploads: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    upload_failures: Mapped[int] = mapped_column(Integer, default=0)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    """Rows stored by jobs that completed."""
    rows_rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    jobs_completed: Mapped[int] = mapped_column(Integer, default=0)
    job_failures: Mapped[int] = mapped_column(Integer, default=0)
    """Jobs failed or timed out (not cancelled)."""
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


# What hour_totals reads on every dashboard request (the current and previous hour) and every rollup:
# without these, each would scan the whole files table.
Index("ix_files_stored_at", File.stored_at, postgresql_where=File.stored_at.is_not(None))
Index("ix_files_failed_updated", File.updated_at, postgresql_where=text("status = 'failed'"))

COUNTS = ("uploads", "bytes", "upload_failures", "rows", "rows_rejected", "jobs_completed", "job_failures")


def hour_totals(start: datetime, end: datetime) -> Select[tuple[int, ...]]:
    """One row of ``COUNTS`` for ``[start, end)`` from the live tables (files, upload_sessions, jobs)."""

    def within(column: object) -> object:
        return and_(column >= start, column < end)  # type: ignore[operator]

    stored = select(func.count(), func.coalesce(func.sum(File.size), 0)).where(within(File.stored_at)).subquery()
    failed_files = select(func.count()).where(File.status == FileStatus.failed, within(File.updated_at)).scalar_subquery()
    failed_sessions = (
        select(func.count())
        .where(UploadSession.state.in_(UPLOAD_FAILED_SESSIONS), within(UploadSession.updated_at))
        .scalar_subquery()
    )
    done = Job.state == JobState.completed
    jobs = (
        select(
            func.coalesce(func.sum(Job.rows_ok).filter(done), 0),
            func.coalesce(func.sum(Job.rows_rejected).filter(done), 0),
            func.count().filter(done),
            func.count().filter(Job.state.in_(JOB_FAILED)),
        )
        .where(within(Job.finished_at))
        .subquery()
    )
    s, j = list(stored.c), list(jobs.c)
    # Each side is one row: the join is a pairing, not a product to worry about.
    return select(s[0], s[1], failed_files + failed_sessions, j[0], j[1], j[2], j[3]).select_from(stored.join(jobs, true()))
