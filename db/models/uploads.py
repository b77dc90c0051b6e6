from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, Timestamps, new_id
from db.models.files import FileKind


class SessionState(enum.StrEnum):
    receiving = "receiving"
    completed = "completed"
    aborted = "aborted"
    expired = "expired"
    failed = "failed"


class UploadSession(Timestamps, Base):
    """A chunked, resumable upload: one S3 multipart upload whose parts are the chunks.

    ``storage_key`` names the object and, in its last segment, the id the file record gets on
    completion; ``kind`` and ``encoding`` are detected from chunk 0 when it arrives.
    """

    __tablename__ = "upload_sessions"
    __table_args__ = (
        Index("ix_upload_sessions_state_expires", "state", "expires_at"),
        Index("ix_upload_sessions_abort_pending", "updated_at", postgresql_where=text("abort_pending")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID] = mapped_column(index=True)
    original_filename: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    chunk_size: Mapped[int] = mapped_column(BigInteger)
    total_chunks: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    content_type: Mapped[str | None] = mapped_column(String(255))
    kind: Mapped[FileKind | None] = mapped_column(Enum(FileKind, name="file_kind", native_enum=False, length=16))
    encoding: Mapped[str | None] = mapped_column(String(32))
    process: Mapped[bool] = mapped_column(default=True)
    state: Mapped[SessionState] = mapped_column(
        Enum(SessionState, name="session_state", native_enum=False, length=16), default=SessionState.receiving
    )
    error: Mapped[str | None] = mapped_column(Text)
    bucket: Mapped[str] = mapped_column(String(63))
    storage_key: Mapped[str] = mapped_column(String(1024))
    s3_upload_id: Mapped[str] = mapped_column(String(1024))
    file_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("files.id", ondelete="SET NULL"))
    expires_at: Mapped[datetime]
    abort_pending: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    """Closed, but its multipart upload could not be released yet (object store down)."""
    protocol: Mapped[str] = mapped_column(String(8), default="chunks", server_default="chunks")
    """``chunks`` (Sluice's chunk API) or ``tus`` (tus 1.0, app/tus)."""
    offset: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """tus: bytes durably stored, in parts (``upload_chunks``) plus the tail object."""
    tail_size: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """tus: bytes after the last whole part, kept in the object ``tus-tails/<id>``."""
    length_deferred: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    """tus: created with ``Upload-Defer-Length``; ``size`` is 0 until a PATCH declares it."""
    tus_metadata: Mapped[str | None] = mapped_column(Text)
    concat: Mapped[str | None] = mapped_column(String(8))
    """tus concatenation: ``partial`` or ``final``."""
    concat_of: Mapped[str | None] = mapped_column(Text)
    """tus final upload: the partial uploads' ids, space-separated, in order."""
    lock_token: Mapped[uuid.UUID | None]
    locked_until: Mapped[datetime | None]
    """tus: the PATCH holding ``lock_token`` writes until then (its lease grows as parts are stored)."""


class UploadChunk(Base):
    """One received chunk; a repeat of the same index replaces the row."""

    __tablename__ = "upload_chunks"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("upload_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    etag: Mapped[str] = mapped_column(String(256))
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
