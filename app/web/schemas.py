"""API shapes of the web app's routes."""

from __future__ import annotations

import msgspec


class WebConfig(msgspec.Struct):
    """What the browser uploader checks before it sends a byte."""

    max_upload_bytes: int
    """Largest file accepted (``SLUICE_MAX_FILE_SIZE``)."""
    accepted_types: list[str]
    """File name extensions and media types the uploader offers; empty when any file is stored
    (``SLUICE_ALLOWED_KINDS`` has ``other``). The server decides from the bytes, not from these."""
    part_size: int
    """Bytes per tus PATCH that fill whole S3 parts (``SLUICE_PART_SIZE``)."""
    tus_endpoint: str
    """Where tus uploads are created."""
