"""API shapes of the jobs domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from db.models import Job
from workers.contracts import MAX_CONCURRENCY, ColumnMapping, ColumnWidening

ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class JobOptionsIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Options a client may set; anything left out takes the server's default."""

    window_rows: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    max_concurrency: Annotated[int, msgspec.Meta(ge=1, le=MAX_CONCURRENCY)] | None = None
    timeout_s: Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 3600)] | None = None
    max_retries: Annotated[int, msgspec.Meta(ge=1, le=10)] | None = None
    delimiter: Annotated[str, msgspec.Meta(min_length=1, max_length=1)] | None = None
    encoding: ShortText | None = None
    header: bool | None = None
    sheet: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    mapping: ColumnMapping | None = None
    strict_types: bool = False
    """Keep the inferred types: a later value that does not fit rejects its row instead of widening the column."""
    yes_no_boolean: bool = True
    """yes/no columns become boolean; false keeps them text."""
    decimal: str | None = None
    """CSV/TSV decimal separator, ``"."`` or ``","`` (any other value answers 422); detected, only when
    unambiguous, when absent."""


class JobsIn(msgspec.Struct, forbid_unknown_fields=True):
    file_ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=100)]
    options: JobOptionsIn = msgspec.field(default_factory=JobOptionsIn)


class DetectedFormat(msgspec.Struct):
    """How the worker read the file: detected where the options left it open, else as the options said."""

    encoding: str | None = None
    """CSV/TSV: the text encoding; null for XLSX."""
    delimiter: str | None = None
    """CSV/TSV: the field separator; null for XLSX."""
    header: bool | None = None
    """Whether the first row was taken as column names."""
    sheet: str | None = None
    """XLSX: the name of the sheet read; null for CSV/TSV."""


class JobRecord(msgspec.Struct):
    id: uuid.UUID
    batch_id: uuid.UUID
    file_id: uuid.UUID
    state: str
    options: dict[str, Any]
    dataset_table: str | None
    rows_ok: int
    rows_rejected: int
    bytes_read: int
    bytes_total: int
    progress: float
    rate: float
    eta_s: float | None
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool = False
    """A cancel was asked for; a running job stops within one window."""
    widenings: list[ColumnWidening] = []
    """Columns given a wider type than inferred because a later value did not fit, in the order it happened."""
    estimated_processing_s: float | None = None
    """While pending: seconds the job should take once it runs, from its file's size and kind and the
    throughput of this deployment's recent jobs (app/jobs/estimate.py); null once it runs (``eta_s`` takes over)."""
    detected: DetectedFormat | None = None
    """What the worker detected and used for the file, recorded when processing starts; null before that,
    and for jobs that ran before it was recorded."""

    @classmethod
    def of(cls, job: Job, estimate: float | None = None) -> JobRecord:
        return cls(
            id=job.id,
            batch_id=job.batch_id,
            file_id=job.file_id,
            state=str(job.state),
            options=job.options,
            dataset_table=job.dataset_table,
            rows_ok=job.rows_ok,
            rows_rejected=job.rows_rejected,
            bytes_read=job.bytes_read,
            bytes_total=job.bytes_total,
            progress=job.progress,
            rate=job.rate,
            eta_s=job.eta_s,
            error=job.error,
            attempts=job.attempts,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            cancel_requested=job.cancel_requested,
            widenings=msgspec.convert(job.widenings or [], list[ColumnWidening]),
            estimated_processing_s=estimate,
            detected=None if job.detected is None else msgspec.convert(job.detected, DetectedFormat),
        )


class BatchRecord(msgspec.Struct):
    batch_id: uuid.UUID
    jobs: list[JobRecord]


class JobPage(msgspec.Struct):
    items: list[JobRecord]
    total: int
    offset: int
    limit: int


class RejectRecord(msgspec.Struct):
    row_number: int
    reason: str
    raw: str


class RejectPage(msgspec.Struct):
    job_id: uuid.UUID
    items: list[RejectRecord]
    total: int
    offset: int
    limit: int
