"""Turns a client's filename into one that is safe to store, to show and to send back in headers."""

from __future__ import annotations

import re
import unicodedata

MAX_NAME_BYTES = 255
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})
"""Control (NUL, C0, C1), format (bidi overrides such as U+202E, zero-width), surrogate and
private-use characters: PostgreSQL refuses NUL, and the others make a name display as another."""
_SPACES = re.compile(r"\s+")
_DOTS = re.compile(r"\.{2,}")


def strip_invisible(text: str) -> str:
    """``text`` in NFC without any character of the categories in ``INVISIBLE_CATEGORIES``."""
    text = unicodedata.normalize("NFC", text)
    if text.isascii() and text.isprintable():
        return text
    return "".join(ch for ch in text if unicodedata.category(ch) not in INVISIBLE_CATEGORIES)


def original_name(raw: str) -> str:
    """The name as the client sent it, path included, minus what cannot be stored or shown honestly."""
    return strip_invisible(raw) or sanitize_filename(raw)


def sanitize_filename(raw: str) -> str:
    """Last path segment, no invisible characters, no leading dots, at most 255 UTF-8 bytes."""
    name = strip_invisible(raw)
    name = re.split(r"[/\\]", name)[-1]
    name = _SPACES.sub(" ", name).strip().lstrip(".").strip()
    name = _DOTS.sub(".", name)
    if not name:
        return "upload"
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    suffix = f".{ext}" if dot and 0 < len(ext.encode()) <= 16 else ""
    stem = stem if suffix else name
    budget = MAX_NAME_BYTES - len(suffix.encode())
    return stem.encode()[:budget].decode(errors="ignore") + suffix
