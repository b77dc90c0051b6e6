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


class MetricsCards(msgspec.Struct):
    """The dashboard's cards. Today is the current UTC day; rates and rows cover the chosen range."""

    files_today: int
    bytes_today: int
    upload_success_rate: float | None
    """Stored uploads / (stored + failed) over the range; null when there were none."""
    median_upload_mib_s: float | None
    """Median of each stored file's size / upload duration over the range; null when there were none."""
    rows_ingested: int
    jobs_by_state: dict[str, int]
    """Jobs now in each state (finished jobs count until they are purged)."""
    queue_depth: int
    """Processing messages waiting in the Dramatiq queue (0 while Redis does not answer)."""
    live_sessions: int
    """Chunked and tus uploads still receiving."""
    incomplete_multipart_uploads: int
    """In the bucket (0 while the object store does not answer: see ``health.storage``)."""


class MetricsPoint(msgspec.Struct):
    """One hour (UTC) of the series; the hour starts at ``hour``."""

    hour: datetime
    uploads: int
    bytes: int
    rows: int
    upload_failures: int
    job_failures: int
    rows_rejected: int
    jobs_completed: int


class MetricsHealth(msgspec.Struct):
    """Each dependency: ``ok`` or a short reason (the same checks as ``/ready``)."""

    postgres: str
    redis: str
    storage: str
    workers: str


class Metrics(msgspec.Struct):
    range: str
    bucket_seconds: int
    cards: MetricsCards
    series: list[MetricsPoint]
    """Every hour of the range, oldest first, the current hour last (empty hours are zeros)."""
    health: MetricsHealth
