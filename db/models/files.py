from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Enum, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base, Timestamps, new_id


class FileStatus(enum.StrEnum):
    receiving = "receiving"
    stored = "stored"
    scanning = "scanning"
    """Stored, waiting for the malware scanner's verdict (``SLUICE_SCANNER``): neither served nor processed."""
    quarantined = "quarantined"
    """The scanner found malware (``scan_signature``): never served nor processed; only deleting it is allowed."""
    failed = "failed"
    deleted = "deleted"


HOLDS_OBJECT = frozenset({FileStatus.stored, FileStatus.scanning, FileStatus.quarantined})
"""States whose bytes are whole in the bucket: what a delete removes and what the owner's storage counts."""


class FileKind(enum.StrEnum):
    csv = "csv"
    tsv = "tsv"
    xlsx = "xlsx"
    other = "other"


class File(Timestamps, Base):
    """A file a user sent; ``stored`` only once its bytes are complete and verified in the bucket."""

    __tablename__ = "files"
    __table_args__ = (
        Index("ix_files_owner_created", "owner_id", "created_at"),
        Index("ix_files_receiving_touched", "touched_at", postgresql_where=text("status = 'receiving'")),
        Index(
            "ix_files_pending_release",
            "updated_at",
            postgresql_where=text("s3_upload_id IS NOT NULL AND status <> 'receiving'"),
        ),
        Index("ix_files_purge_pending", "updated_at", postgresql_where=text("purge_pending")),
        Index("ix_files_scanning", "updated_at", postgresql_where=text("status = 'scanning'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    owner_id: Mapped[uuid.UUID]
    original_filename: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    content_type: Mapped[str | None] = mapped_column(String(255))
    kind: Mapped[FileKind] = mapped_column(Enum(FileKind, name="file_kind", native_enum=False, length=16))
    encoding: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[FileStatus] = mapped_column(
        Enum(FileStatus, name="file_status", native_enum=False, length=16), default=FileStatus.receiving
    )
    error: Mapped[str | None] = mapped_column(Text)
    process: Mapped[bool] = mapped_column(default=True)
    bucket: Mapped[str] = mapped_column(String(63))
    storage_key: Mapped[str] = mapped_column(String(1024))
    duration_ms: Mapped[int | None]
    stored_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    touched_at: Mapped[datetime | None]
    """Moved forward while the body streams; a ``receiving`` row that stops moving is a dead upload."""
    s3_upload_id: Mapped[str | None] = mapped_column(String(1024))
    """The multipart upload the body streams into, until it is completed or released."""
    purge_pending: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    """Deleted, but its object could not be removed yet (object store down)."""
    scan_signature: Mapped[str | None] = mapped_column(Text)
    """The malware the scanner found in a ``quarantined`` file, as clamd names it."""
    scanned_at: Mapped[datetime | None]
    """When the scanner gave its verdict (clean or infected); null when no scanner looked at the file."""
