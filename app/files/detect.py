"""Detects what a file is from its bytes, never from its name.

The first bytes decide most files at once. A ZIP can only be judged whole: OOXML writers put
``xl/workbook.xml`` anywhere (openpyxl writes it after the sheet data), so a ZIP whose first entry
is an OOXML part is accepted provisionally and confirmed from its central directory, which sits in
its last bytes (``Tail`` keeps them while the body flows past; ``confirm`` reads them).
"""

from __future__ import annotations

import codecs
import io
import zipfile
import zlib
from collections import deque
from dataclasses import dataclass

from db.models import FileKind

CONTENT_TYPES = {
    FileKind.csv: "text/csv",
    FileKind.tsv: "text/tab-separated-values",
    FileKind.xlsx: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    FileKind.other: "application/octet-stream",
}
GZIP_CONTENT_TYPE = "application/gzip"
GZIP_MAGIC = b"\x1f\x8b\x08"
ACCEPTED = "CSV or TSV text (UTF-8, UTF-16 with BOM, or Latin-1, optionally gzip-compressed) and XLSX workbooks"
HEAD_BYTES = 64 * 1024
TAIL_BYTES = 1024 * 1024 + 22 + 65535
"""End of a ZIP kept for its verdict: the end-of-central-directory record with the longest comment,
and a central directory of up to 1 MiB (about 10,000 entries, the most a workbook may have)."""

_CHARSETS = {"utf-8": "utf-8", "utf-8-sig": "utf-8", "utf-16-le": "utf-16", "utf-16-be": "utf-16", "latin-1": "iso-8859-1"}
"""Python codec → IANA charset; UTF-16 files keep their BOM, which is what plain ``utf-16`` means."""
_ZIP_LOCAL = b"PK\x03\x04"
_OOXML_FIRST = (b"[Content_Types].xml", b"_rels/", b"docProps/", b"xl/")
_WORKBOOK = "xl/workbook.xml"
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
    gzip: bool = False
    """CSV/TSV compressed with gzip: stored as sent, decompressed while it is processed."""
    provisional: bool = False
    """An OOXML ZIP not yet confirmed: ``confirm`` must see its end before it is accepted."""

    @property
    def content_type(self) -> str:
        """What the object is served as: text with the charset it was detected in, gzip as gzip."""
        if self.gzip:
            return GZIP_CONTENT_TYPE
        charset = charset_of(self.encoding)
        return f"{CONTENT_TYPES[self.kind]}; charset={charset}" if charset else CONTENT_TYPES[self.kind]


def charset_of(encoding: str | None) -> str | None:
    """The IANA charset of a detected text encoding (``None`` for binary files)."""
    return _CHARSETS.get(encoding or "")


def detect(head: bytes, *, complete: bool) -> Detected:
    """Classify ``head`` (the first bytes of a file; ``complete`` when it is the whole file)."""
    if head.startswith(_ZIP_LOCAL):
        if not _first_entry(head).startswith(_OOXML_FIRST):
            return Detected(FileKind.other)
        if complete:
            return Detected(FileKind.xlsx) if confirm(head, len(head)) is None else Detected(FileKind.other)
        return Detected(FileKind.xlsx, provisional=True)
    if head.startswith(GZIP_MAGIC):
        return _detect_gzip(head, complete=complete)
    return _detect_text(head, complete=complete)


def confirm(tail: bytes, size: int) -> str | None:
    """Why the ZIP of ``size`` bytes ending in ``tail`` is not an XLSX workbook; ``None`` when it is."""
    try:
        with zipfile.ZipFile(_TailFile(tail, size)) as archive:
            names = set(archive.namelist())
    except _BeforeTail:
        return (
            f"this ZIP's central directory is larger than {TAIL_BYTES - 65557:,} bytes (too many entries for a"
            f" workbook); send {ACCEPTED}"
        )
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError):
        return f"this file starts like an XLSX workbook but is not a readable ZIP archive; send {ACCEPTED}"
    if _WORKBOOK not in names:
        return f"this ZIP archive is not an XLSX workbook (it has no {_WORKBOOK}); send {ACCEPTED}"
    return None


class Tail:
    """The last ``limit`` bytes of a stream, kept as the pieces that carried them (no copying)."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self._limit = limit
        self._pieces: deque[bytes] = deque()
        self._size = 0

    def feed(self, data: bytes) -> None:
        self._pieces.append(data)
        self._size += len(data)
        while self._size - len(self._pieces[0]) >= self._limit:
            self._size -= len(self._pieces.popleft())

    def value(self) -> bytes:
        return b"".join(self._pieces)[-self._limit :]


def _first_entry(head: bytes) -> bytes:
    """The name of a ZIP's first local entry."""
    if len(head) < 30:
        return b""
    length = int.from_bytes(head[26:28], "little")
    return head[30 : 30 + length]


def _detect_gzip(head: bytes, *, complete: bool) -> Detected:
    """gzip whose decompressed first bytes are CSV/TSV text; anything else compressed is other."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        text = inflater.decompress(head, HEAD_BYTES)
    except zlib.error:
        return Detected(FileKind.other)
    found = _detect_text(text, complete=complete and inflater.eof and len(text) < HEAD_BYTES) if text else None
    if found is None or found.kind == FileKind.other:
        return Detected(FileKind.other)
    return Detected(found.kind, found.encoding, gzip=True)


def _detect_text(head: bytes, *, complete: bool) -> Detected:
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


class _BeforeTail(OSError):
    """zipfile asked for bytes that were not kept."""


class _TailFile(io.RawIOBase):
    """A seekable file of ``size`` bytes of which only the last ``len(tail)`` can be read."""

    def __init__(self, tail: bytes, size: int) -> None:
        self._tail = tail
        self._base = size - len(tail)
        self._size = size
        self._position = 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(base + offset, 0)
        return self._position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._position >= self._size:
            return 0
        if self._position < self._base:
            raise _BeforeTail("the bytes asked for were not kept")
        start = self._position - self._base
        data = self._tail[start : start + len(buffer)]
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)
