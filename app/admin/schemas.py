"""API shapes of the admin routes."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec


class Tally(msgspec.Struct):
    count: int
    bytes: int


class Stats(msgspec.Struct):
    """The whole service, every owner: files and their bytes by status, jobs by state, live sessions."""

    files: dict[str, Tally]
    jobs: dict[str, int]
    rows_stored: int
    uploads_receiving: int
    upload_bytes_received: int
    upload_bytes_expected: int
    incomplete_multipart_uploads: int
    """In the bucket: live sessions' uploads plus orphans the maintenance task has not aborted yet."""
    bucket: str
    api_keys: int
    owners: int


class ActiveUpload(msgspec.Struct):
    id: uuid.UUID
    owner_id: uuid.UUID
    filename: str
    size: int
    total_chunks: int
    received_chunks: int
    bytes_received: int
    created_at: datetime
    expires_at: datetime


class ActiveUploadPage(msgspec.Struct):
    items: list[ActiveUpload]
    total: int
    offset: int
    limit: int


class OwnerStorage(msgspec.Struct):
    """What one owner holds in the bucket and what its live sessions are writing."""

    owner_id: uuid.UUID
    files_stored: int
    bytes_stored: int
    """Stored files' bytes."""
    uploads_receiving: int
    """Chunked sessions still receiving."""
    bytes_in_sessions: int
    """Bytes those sessions have received so far."""
    incomplete_multipart_uploads: int
    """Multipart uploads in the bucket under the owner's keys: live sessions' and orphans not aborted yet."""


class OwnerStoragePage(msgspec.Struct):
    items: list[OwnerStorage]
    total: int
    offset: int
    limit: int
