"""API shapes of the batches domain."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec


class BatchJob(msgspec.Struct):
    """One job of a batch: which file, how far, and why it failed if it did."""

    id: uuid.UUID
    file_id: uuid.UUID
    filename: str
    state: str
    progress: float
    rows_ok: int
    rows_rejected: int
    bytes_total: int
    error: str | None
    cancel_requested: bool
    estimated_processing_s: float | None = None
    """Before the job starts: seconds it should take, from its file's size and kind and the throughput
    of this deployment's recent jobs; null once it runs (its ``eta_s`` takes over)."""


class BatchSummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    state: str
    """``pending`` until a job starts, ``processing`` until all have finished, then ``completed`` when all
    completed, ``failed`` when one failed or timed out, else ``cancelled``."""
    jobs_by_state: dict[str, int]
    files_total: int
    files_processed: int
    """Jobs completed."""
    files_failed: int
    """Jobs failed or timed out."""
    files_cancelled: int
    rows_ok: int
    rows_rejected: int
    bytes_read: int
    bytes_total: int
    progress: float
    """Percent done, each job weighted by its file's size; a finished job counts as done."""
    eta_s: float | None
    """Seconds left at the batch's pace so far (bytes done since its first job started); null before
    any progress and once finished."""
    created_at: datetime
    finished_at: datetime | None
    """When the last job finished; null while any is unfinished."""


class BatchDetail(BatchSummary, kw_only=True):
    jobs: list[BatchJob]


class BatchPage(msgspec.Struct):
    items: list[BatchSummary]
    total: int
    offset: int
    limit: int
