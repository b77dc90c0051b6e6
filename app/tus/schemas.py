"""Shapes of tus 1.0 requests and answers: tus speaks in headers, so these are headers parsed or to send."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

TUS_VERSION = "1.0.0"
EXTENSIONS = (
    "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration,"
    "concatenation,concatenation-unfinished"
)
CHECKSUM_ALGORITHMS = ("sha1", "sha256", "md5")
OFFSET_TYPE = "application/offset+octet-stream"


class Checksum(msgspec.Struct, frozen=True):
    """``Upload-Checksum: <algorithm> <base64 digest>`` of one PATCH body."""

    algorithm: str
    digest: bytes


class Creation(msgspec.Struct, frozen=True):
    """What a creation request (``POST /api/v1/tus/``) asks for."""

    length: int | None
    """``Upload-Length``; ``None`` with ``Upload-Defer-Length: 1``."""
    metadata: dict[str, bytes]
    """``Upload-Metadata``, values decoded (a key without a value maps to ``b""``)."""
    raw_metadata: str | None
    partial: bool = False
    final_of: list[uuid.UUID] | None = None
    """``Upload-Concat: final;...``: the partial uploads to join, in order."""


class TusState(msgspec.Struct, frozen=True):
    """What HEAD (and the end of a PATCH or creation) tells the client about an upload."""

    id: uuid.UUID
    offset: int | None
    """``None`` for a final upload whose partial uploads are not all complete yet (no offset to tell)."""
    length: int | None
    """``None`` while the length is deferred (or a partial upload of a final one still defers its own)."""
    metadata: str | None
    expires: datetime | None
    """``None`` once the upload is complete (it no longer expires)."""
    concat: str | None = None
    """The ``Upload-Concat`` value to echo: ``partial`` or ``final;<urls>``."""
    file_id: uuid.UUID | None = None
    job_id: uuid.UUID | None = None
