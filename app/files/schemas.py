"""API shapes of the files domain."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from db.models import File, Job


class FileRecord(msgspec.Struct):
    id: uuid.UUID
    filename: str
    original_filename: str
    size: int
    sha256: str | None
    kind: str
    content_type: str | None
    status: str
    error: str | None
    process: bool
    bucket: str
    storage_key: str
    created_at: datetime
    stored_at: datetime | None
    duration_ms: int | None
    job_id: uuid.UUID | None = None
    """The file's latest processing job (on upload: the one storing it created), if any."""
    job_state: str | None = None
    """That job's state: pending, processing, completed, failed, cancelled or timed_out."""
    rows_ok: int | None = None
    rows_rejected: int | None = None
    dataset_table: str | None = None
    """``schema.table`` holding the rows, once the job completed."""
    scan_signature: str | None = None
    """What the malware scanner found in a ``quarantined`` file (``SLUICE_SCANNER``)."""
    scanned_at: datetime | None = None
    """When the scanner's verdict came; null while ``scanning``, or when no scanner looked at the file."""
    estimated_processing_s: float | None = None
    """A stored CSV/TSV/XLSX file not processed yet (no job, or its job pending): seconds processing
    should take (app/jobs/estimate.py); null once its job runs (the job's ``eta_s`` takes over)."""

    @classmethod
    def of(cls, file: File, job: Job | None = None, estimate: float | None = None) -> FileRecord:
        return cls(
            id=file.id,
            filename=file.filename,
            original_filename=file.original_filename,
            size=file.size,
            sha256=file.sha256,
            kind=str(file.kind),
            content_type=file.content_type,
            status=str(file.status),
            error=file.error,
            process=file.process,
            bucket=file.bucket,
            storage_key=file.storage_key,
            created_at=file.created_at,
            stored_at=file.stored_at,
            duration_ms=file.duration_ms,
            job_id=job.id if job is not None else None,
            job_state=str(job.state) if job is not None else None,
            rows_ok=job.rows_ok if job is not None else None,
            rows_rejected=job.rows_rejected if job is not None else None,
            dataset_table=job.dataset_table if job is not None else None,
            scan_signature=file.scan_signature,
            scanned_at=file.scanned_at,
            estimated_processing_s=estimate,
        )


class FilePage(msgspec.Struct):
    items: list[FileRecord]
    total: int
    offset: int
    limit: int
