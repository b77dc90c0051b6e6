"""API shapes of the files domain."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from db.models import File


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
    """The job that processes the file, when storing it created one."""

    @classmethod
    def of(cls, file: File, job_id: uuid.UUID | None = None) -> FileRecord:
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
            job_id=job_id,
        )


class FilePage(msgspec.Struct):
    items: list[FileRecord]
    total: int
    offset: int
    limit: int
