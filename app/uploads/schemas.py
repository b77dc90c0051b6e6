"""API shapes of chunked, resumable upload sessions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from app.files.schemas import FileRecord
from db.models import File, UploadSession


class SessionIn(msgspec.Struct, forbid_unknown_fields=True):
    filename: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    size: int
    """Bytes of the whole file."""
    chunk_size: int | None = None
    """Bytes per chunk (every chunk but the last); the server's default when absent."""
    sha256: str | None = None
    """SHA-256 (hex) of the whole file, verified once the chunks are assembled."""
    content_type: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    process: bool = True


class SessionRecord(msgspec.Struct):
    id: uuid.UUID
    filename: str
    size: int
    chunk_size: int
    total_chunks: int
    state: str
    expires_at: datetime
    created_at: datetime
    received_chunks: list[int]
    missing_chunks: list[int]
    bytes_received: int
    sha256: str | None
    process: bool
    error: str | None
    file_id: uuid.UUID | None

    @classmethod
    def of(cls, session: UploadSession, state: str, received: list[int], bytes_received: int) -> SessionRecord:
        have = set(received)
        return cls(
            id=session.id,
            filename=session.filename,
            size=session.size,
            chunk_size=session.chunk_size,
            total_chunks=session.total_chunks,
            state=state,
            expires_at=session.expires_at,
            created_at=session.created_at,
            received_chunks=received,
            missing_chunks=[i for i in range(session.total_chunks) if i not in have],
            bytes_received=bytes_received,
            sha256=session.sha256,
            process=session.process,
            error=session.error,
            file_id=session.file_id,
        )


class ChunkRecord(msgspec.Struct):
    index: int
    size: int
    sha256: str
    received: int
    """Distinct chunks the session has now."""
    total_chunks: int


class CompletedUpload(FileRecord, kw_only=True):
    """The stored file, with the session it came from and its processing job (if any)."""

    upload_id: uuid.UUID
    job_id: uuid.UUID | None = None

    @classmethod
    def of_upload(cls, file: File, upload_id: uuid.UUID, job_id: uuid.UUID | None) -> CompletedUpload:
        fields = msgspec.structs.asdict(FileRecord.of(file)) | {"upload_id": upload_id, "job_id": job_id}
        return cls(**fields)
