"""Shapes of the events a stream sends; jobs and uploads send the workers' ``JobEvent`` and ``UploadEvent``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

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


class StreamLinkIn(msgspec.Struct, forbid_unknown_fields=True):
    path: str
    """An event stream: ``/api/v1/jobs/{id}/events``, ``/api/v1/batches/{id}/events`` or ``/api/v1/uploads/{id}/events``."""
    ttl_s: Annotated[int, msgspec.Meta(ge=60, le=7 * 24 * 3600)] = 3600


class StreamLink(msgspec.Struct):
    """A URL that opens one event stream without an Authorization header (for a browser's EventSource)."""

    url: str
    expires_at: datetime
