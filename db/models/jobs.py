from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, Timestamps, new_id


class JobState(enum.StrEnum):
    pending = "pending"
    processing = "processing"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    timed_out = "timed_out"


TERMINAL_JOB_STATES = frozenset({JobState.completed, JobState.failed, JobState.cancelled, JobState.timed_out})
ACTIVE_SQL = "state IN ('pending', 'processing')"


class Job(Timestamps, Base):
    """Processing of one file into its dataset table; jobs created together share a ``batch_id``."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_owner_created", "owner_id", "created_at"),
        # One pending or processing job per file, enforced where two requests cannot both pass a check.
        Index("uq_jobs_one_active_per_file", "file_id", unique=True, postgresql_where=text(ACTIVE_SQL)),
        Index("ix_jobs_active_updated", "updated_at", postgresql_where=text(ACTIVE_SQL)),
        Index("ix_jobs_finished", "finished_at", postgresql_where=text("finished_at IS NOT NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID]
    batch_id: Mapped[uuid.UUID] = mapped_column(index=True)
    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), index=True)
    state: Mapped[JobState] = mapped_column(
        Enum(JobState, name="job_state", native_enum=False, length=16), default=JobState.pending, index=True
    )
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    dataset_table: Mapped[str | None] = mapped_column(String(255))
    rows_ok: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    progress: Mapped[float] = mapped_column(default=0.0)
    rate: Mapped[float] = mapped_column(default=0.0)
    eta_s: Mapped[float | None]
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    widenings: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    """Columns whose inferred type was widened while loading: column, from_type, to_type, row_number."""
    detected: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """What the worker detected and used: encoding, delimiter, header, sheet; null until it starts."""
    enqueued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class JobWindow(Base):
    """Checkpoint: a window whose rows are committed, written in the same transaction as the rows."""

    __tablename__ = "job_windows"

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    rows_ok: Mapped[int] = mapped_column(Integer)
    rows_rejected: Mapped[int] = mapped_column(Integer)
    bytes_read: Mapped[int] = mapped_column(BigInteger)
    committed_at: Mapped[datetime] = mapped_column(server_default=func.now())


class JobReject(Base):
    """A row that could not be stored, with its row number in the file and why."""

    __tablename__ = "job_rejects"
    __table_args__ = (Index("ix_job_rejects_job_row", "job_id", "row_number"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    row_number: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text)
