"""Turns a client's filename into one that is safe to show and to send back in headers."""

from __future__ import annotations

import re
import unicodedata

MAX_NAME_BYTES = 255
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_SPACES = re.compile(r"\s+")


def sanitize_filename(raw: str) -> str:
    """Last path segment, no control characters, no leading dots, at most 255 UTF-8 bytes."""
    name = unicodedata.normalize("NFC", raw)
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE.sub("", name)
    name = _SPACES.sub(" ", name).strip().lstrip(".").strip()
    name = name.replace("..", ".")
    if not name:
        return "upload"
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    suffix = f".{ext}" if dot and 0 < len(ext.encode()) <= 16 else ""
    stem = stem if suffix else name
    budget = MAX_NAME_BYTES - len(suffix.encode())
    return stem.encode()[:budget].decode(errors="ignore") + suffix
