"""Detects what a file is from its first bytes, never from its name."""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from db.models import FileKind

CONTENT_TYPES = {
    FileKind.csv: "text/csv",
    FileKind.tsv: "text/tab-separated-values",
    FileKind.xlsx: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    FileKind.other: "application/octet-stream",
}
ACCEPTED = "CSV or TSV text (UTF-8, UTF-16 with BOM, or Latin-1) and XLSX workbooks"
HEAD_BYTES = 64 * 1024

# C0 controls other than tab, LF, FF and CR do not occur in text exports.
_BINARY_CONTROLS = bytes(b for b in range(32) if b not in (9, 10, 12, 13)) + b"\x7f"
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


@dataclass(frozen=True, slots=True)
class Detected:
    kind: FileKind
    encoding: str | None = None


def detect(head: bytes, *, complete: bool) -> Detected:
    """Classify ``head`` (the first bytes of a file; ``complete`` when it is the whole file)."""
    if head.startswith(b"PK\x03\x04"):
        # Local headers come first in a ZIP; OOXML writers put the workbook part near the start.
        if b"xl/workbook.xml" in head or (b"[Content_Types].xml" in head and b"xl/" in head):
            return Detected(FileKind.xlsx)
        return Detected(FileKind.other)
    text, encoding = _decode(head, complete=complete)
    if text is None:
        return Detected(FileKind.other)
    return Detected(FileKind.tsv if _looks_tab_separated(text) else FileKind.csv, encoding)


def _decode(head: bytes, *, complete: bool) -> tuple[str | None, str | None]:
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            try:
                text = codecs.getincrementaldecoder(encoding)().decode(head, final=complete)
            except UnicodeDecodeError:
                return None, None
            return (None, None) if "\x00" in text else (text, encoding)
    if b"\x00" in head:
        return None, None
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(head, final=complete), "utf-8"
    except UnicodeDecodeError:
        pass
    controls = sum(head.count(c) for c in _BINARY_CONTROLS)
    if controls > len(head) // 100:
        return None, None
    return head.decode("latin-1"), "latin-1"


def _looks_tab_separated(text: str) -> bool:
    lines = [line for line in text.splitlines()[:20] if line.strip()]
    if not lines:
        return False
    tabs = [line.count("\t") for line in lines]
    commas = [line.count(",") + line.count(";") for line in lines]
    return min(tabs) > 0 and sum(tabs) >= sum(commas)
