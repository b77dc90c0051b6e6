"""Shapes of the events a stream sends; jobs and uploads send the workers' ``JobEvent`` and ``UploadEvent``."""

from __future__ import annotations

from typing import Any

import msgspec


class BatchEvent(msgspec.Struct, kw_only=True):
    """The state of a batch of jobs, aggregated over its jobs.

    ``state`` is ``pending`` while no job has started, ``processing`` until every job has ended,
    then ``completed`` (all completed), ``failed`` (any failed or timed out) or ``cancelled``.
    ``progress`` is weighted by file size, counting ended jobs as done. ``job`` is the job event
    that changed the batch; the snapshot lists every job in ``jobs`` instead, and ``job`` is null.
    """

    type: str
    batch_id: str
    state: str
    jobs_total: int
    jobs_by_state: dict[str, int]
    rows_ok: int = 0
    rows_rejected: int = 0
    bytes_read: int = 0
    bytes_total: int = 0
    progress: float = 0.0
    rate: float = 0.0
    eta_s: float | None = None
    job: dict[str, Any] | None = None
    """The job event (every ``JobEvent`` field) that changed the batch."""
    jobs: list[dict[str, Any]] = []
    """Every job's state; only in the snapshot."""
    seq: int = 0
