"""What the API and the workers agree on: queue and actor names, messages, Redis channel names.

The API imports this module (and ``workers.broker``) but never actor code.
"""

from __future__ import annotations

import uuid

from typing import Annotated, Literal

import dramatiq
import msgspec
from prometheus_client import Counter

PROCESS_QUEUE = "process"
PROCESS_FILE_ACTOR = "process_file"
MAINTENANCE_QUEUE = "maintenance"
SCAN_QUEUE = "scan"
SCAN_FILE_ACTOR = "scan_file"


def process_file_message(job_id: uuid.UUID) -> dramatiq.Message[None]:
    """The message that asks a worker to run one job; it carries the id, never the data."""
    return dramatiq.Message(
        queue_name=PROCESS_QUEUE, actor_name=PROCESS_FILE_ACTOR, args=(str(job_id),), kwargs={}, options={}
    )


def scan_file_message(file_id: uuid.UUID) -> dramatiq.Message[None]:
    """The message that asks a worker to scan one stored file for malware (``SLUICE_SCANNER``)."""
    return dramatiq.Message(
        queue_name=SCAN_QUEUE, actor_name=SCAN_FILE_ACTOR, args=(str(file_id),), kwargs={}, options={}
    )


def job_channel(prefix: str, job_id: uuid.UUID | str) -> str:
    return f"{prefix}:events:job:{job_id}"


def upload_channel(prefix: str, upload_id: uuid.UUID | str) -> str:
    return f"{prefix}:events:upload:{upload_id}"


def job_snapshot_key(prefix: str, job_id: uuid.UUID | str) -> str:
    return f"{prefix}:snapshot:job:{job_id}"


def seq_key(channel: str) -> str:
    """Counter that numbers the events of one channel (the SSE ``id``), across publishers."""
    return f"{channel}:seq"


def snapshot_key(channel: str) -> str:
    """The latest event of a channel, so a late watcher starts from the current state."""
    return f"{channel}:snapshot"


class ColumnWidening(msgspec.Struct, frozen=True):
    """A column whose inferred type did not hold a later value, and the type it was given instead."""

    column: str
    from_type: str
    to_type: str
    row_number: int
    """The row (in the file's numbering, the header is row 1) whose value needed the wider type."""


class JobEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Progress of one job, as published after each window and on every state change.

    ``type`` is ``progress``, ``state``, ``widened`` (with ``widening``) or the terminal state
    (``completed``, ``failed``, ``cancelled``, ``timed_out``). ``seq`` is set by
    ``workers.progress.publish``.
    """

    type: str
    job_id: str
    batch_id: str
    file_id: str
    state: str
    rows_ok: int = 0
    rows_rejected: int = 0
    bytes_read: int = 0
    bytes_total: int = 0
    progress: float = 0.0
    rate: float = 0.0
    eta_s: float | None = None
    error: str | None = None
    dataset_table: str | None = None
    widening: ColumnWidening | None = None
    seq: int = 0


class UploadEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Progress of one chunked upload session: ``chunk``, ``state`` or terminal ``completed``/``aborted``/``expired``/``failed``."""

    type: str
    upload_id: str
    state: str
    received_chunks: int = 0
    total_chunks: int = 0
    bytes_received: int = 0
    size: int = 0
    file_id: str | None = None
    job_id: str | None = None
    error: str | None = None
    seq: int = 0


MAX_CONCURRENCY = 16
"""Most windows one job may write at once (each holds a PostgreSQL connection)."""

ColumnType = Literal["bigint", "double precision", "numeric", "boolean", "date", "timestamp", "timestamptz", "text"]


class ColumnMapping(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """How file columns become table columns; names are header names (as in the file or sanitised)."""

    select: list[str] | None = None
    """Keep only these columns, in the file's order; all when absent."""
    rename: dict[str, str] = {}
    cast: dict[str, ColumnType] = {}
    """Column type instead of the inferred one, pinned: it is never widened, a value that does not
    cast rejects its row."""


class JobOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The resolved options of one job, stored on the job row; the worker reads them from there."""

    window_rows: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    max_concurrency: Annotated[int, msgspec.Meta(ge=1, le=MAX_CONCURRENCY)]
    timeout_s: Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 3600)]
    max_retries: Annotated[int, msgspec.Meta(ge=1, le=10)]
    delimiter: str | None = None
    encoding: str | None = None
    header: bool | None = None
    sheet: str | None = None
    mapping: ColumnMapping | None = None
    strict_types: bool = False
    """Inferred types are pinned like ``mapping.cast``: a value that does not fit rejects its row
    instead of widening the column."""
    yes_no_boolean: bool = True
    """yes/no columns become boolean (as true/false/t/f do); false keeps them text."""
    decimal: Literal[".", ","] | None = None
    """CSV/TSV decimal separator: ``","`` reads ``1.234,50`` as 1234.50 in columns of such numbers,
    ``"."`` never does; ``None`` detects it only when unambiguous (see ``decimal_comma_columns``)."""
    decimal_columns: list[str] | None = None
    """Set by the worker, not the client: the columns it read with a decimal comma (``[]``: none)."""


def dataset_table(file_id: uuid.UUID) -> str:
    """Name of a file's dataset table, inside the dataset schema."""
    return f"f_{file_id.hex}"


UPLOADS = Counter(
    "sluice_uploads",
    "Uploads that ended, by route and outcome (stored, failed, aborted, expired): the API counts most, "
    "the workers' sweepers the sessions they expire and the stalled uploads they fail.",
    ["route", "outcome"],
)
"""Both processes count into it; defined once so that a process importing both sides registers it once."""
