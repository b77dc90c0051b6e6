"""XLSX parser: in a child process with a memory limit, windows sent back by pipe.

calamine decodes a whole sheet into memory before its first row (1M rows × 8 columns, an 82 MiB
file: ~740 MiB RSS) and a failed allocation inside it aborts the process. So a workbook is first
pre-scanned from its ZIP central directory and the sheet's declared dimension (nothing large is
decompressed). A sheet whose estimated calamine memory (``CELL_BYTES`` a declared cell) fits
``calamine_memory`` is read by calamine; a larger one is streamed from its ZIP entry in flat
memory (``workers.parsers.xlsx_stream``), typed the same way. Either runs in a spawned child under
RLIMIT_AS with a timeout: a hostile or huge file ends the child, never the worker, and the caller
gets an XlsxRefused that says why.

Row numbers are the sheet's own (as Excel shows them); empty rows are skipped and not counted.
Cell values are written as text PostgreSQL parses: integral numbers as integers, other numbers in
Python's shortest round-trip form, booleans as true/false, dates and datetimes in ISO 8601.
"""

from __future__ import annotations

import csv
import datetime
import io
import posixpath
import re
import resource
import signal
import zipfile
from collections.abc import Iterator
from itertools import chain, islice
from multiprocessing.connection import Connection
from typing import Any
from xml.etree import ElementTree

import msgspec

from workers.parsers.child import ChildEnded, ChildProcess, child_channel
from workers.parsers.types import (
    Column,
    ParseError,
    Reject,
    Table,
    Window,
    infer_types,
    looks_like_header,
    sanitize_columns,
)

MiB = 1024 * 1024
SNIFF_RECORDS = 100
CELL_BYTES = 90
"""calamine's memory per cell of a decoded sheet (measured: 1M × 8 cells, ~740 MiB)."""
XML_CELL_BYTES = 40
"""Bytes of sheet XML per cell, to estimate the cells of a sheet that declares no dimension."""
_WORKBOOK = "xl/workbook.xml"
_WORKBOOK_RELS = "xl/_rels/workbook.xml.rels"
_PART_LIMIT = 8 * MiB
"""Largest workbook.xml / rels part read by the pre-scan."""
_DIMENSION_PEEK = 64 * 1024
_DIMENSION = re.compile(rb'<(?:\w+:)?dimension\s+ref="\$?([A-Z]{1,3})\$?([0-9]+)(?::\$?([A-Z]{1,3})\$?([0-9]+))?"')
_REL_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"


class XlsxRefused(ParseError):
    """The workbook is refused before or while parsing (limits, zip bomb, memory, time)."""


class XlsxLimits(msgspec.Struct, frozen=True):
    """Limits on one workbook; the defaults fit a 2 GiB child (calamine needs ~90 bytes a cell)."""

    max_uncompressed: int = 4096 * MiB
    """Sum of the uncompressed sizes of all ZIP entries."""
    max_ratio: float = 100.0
    """Largest uncompressed/compressed ratio of an entry at least ``ratio_floor`` bytes big."""
    ratio_floor: int = 8 * MiB
    max_entries: int = 10_000
    max_cells: int = 100_000_000
    """Rows × columns of the sheet's declared dimension."""
    calamine_memory: int = 256 * MiB
    """Largest estimated calamine memory of a sheet read by calamine; larger sheets are streamed."""
    memory_bytes: int = 2048 * MiB
    """RLIMIT_AS of the parsing child."""
    timeout_s: float = 300.0
    """Longest wait for the child's next window (calamine decodes the whole sheet before the first)."""


class Prescan(msgspec.Struct, frozen=True):
    """What the pre-scan learnt: the sheet, its ZIP part, the file's size and which reader to use."""

    path: str
    sheet: str
    part: str | None
    size: int
    stream: bool


def prescan_xlsx(path: str, limits: XlsxLimits, *, sheet: str | None = None) -> Prescan:
    """Raise XlsxRefused (or ParseError for a missing sheet) if the workbook must not be parsed."""
    return _prescan(path, limits, sheet)


def open_xlsx(
    path: str,
    *,
    window_rows: int,
    sheet: str | None = None,
    header: bool | None = None,
    limits: XlsxLimits | None = None,
) -> tuple[Table, Iterator[Window]]:
    """Pre-scan, then parse ``sheet`` (the first one by default) of the workbook at ``path``.

    The child sends the header and window 0 before this returns (types are inferred from window 0);
    the iterator receives the rest. Closing the iterator (or dropping it) stops the child.
    """
    if window_rows < 1:
        raise ValueError("window_rows must be at least 1")
    limits = limits or XlsxLimits()
    found = _prescan(path, limits, sheet)
    child = _Child(path, found, window_rows, header, limits)
    try:
        head = child.receive()
        if isinstance(head, _End):
            child.close()
            return Table(columns=[], has_header=False, sheet=found.sheet), iter(())
        assert isinstance(head, _Head)
        first = child.receive()
    except BaseException:
        child.close()
        raise
    headers = head.headers or [f"col_{i}" for i in range(1, head.width + 1)]
    if isinstance(first, _End):
        child.close()
        columns = [Column(n, h, "text") for n, h in zip(sanitize_columns(headers), headers, strict=True)]
        return Table(columns=columns, has_header=head.headers is not None, sheet=found.sheet), iter(())
    assert isinstance(first, _Part)
    types = infer_types(first.window.rows or [], head.width)
    columns = [Column(n, h, t) for n, h, t in zip(sanitize_columns(headers), headers, types, strict=True)]
    return Table(columns=columns, has_header=head.headers is not None, sheet=found.sheet), child.windows(first.window)


# --- pre-scan -------------------------------------------------------------------------------


def _prescan(path: str, limits: XlsxLimits, sheet: str | None) -> Prescan:
    """The sheet, its part, the file's size and the reader, once the workbook passed every limit."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise XlsxRefused(f"not an XLSX workbook (the ZIP container cannot be read: {error})") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > limits.max_entries:
            raise XlsxRefused(f"the workbook has {len(entries):,} ZIP entries (limit {limits.max_entries:,})")
        total = sum(e.file_size for e in entries)
        if total > limits.max_uncompressed:
            raise XlsxRefused(
                f"the workbook expands to {_size(total)} (limit {_size(limits.max_uncompressed)}): refusing it"
            )
        for entry in entries:
            ratio = entry.file_size / max(entry.compress_size, 1)
            if entry.file_size >= limits.ratio_floor and ratio > limits.max_ratio:
                raise XlsxRefused(
                    f"{entry.filename} expands {ratio:,.0f}× (limit {limits.max_ratio:,.0f}×): refusing a possible zip bomb"
                )
        names = {e.filename for e in entries}
        if _WORKBOOK not in names:
            raise XlsxRefused(f"not an XLSX workbook (no {_WORKBOOK})")
        sheets = _sheets(archive, names)
        if not sheets:
            raise XlsxRefused("the workbook has no sheets")
        if sheet is None:
            name, part = sheets[0]
        else:
            found = [s for s in sheets if s[0] == sheet]
            if not found:
                raise ParseError(f"sheet {sheet!r} not found; the workbook has: {', '.join(n for n, _ in sheets)}")
            name, part = found[0]
        estimate = 0
        if part is not None and part in names:
            cells = _declared_cells(archive, part)
            if cells is not None and cells[0] * cells[1] > limits.max_cells:
                rows, cols = cells
                raise XlsxRefused(
                    f"sheet {name!r} declares {rows:,} rows × {cols:,} columns = {rows * cols:,} cells"
                    f" (limit {limits.max_cells:,}): split it or export it as CSV"
                )
            count = cells[0] * cells[1] if cells is not None else archive.getinfo(part).file_size // XML_CELL_BYTES
            estimate = count * CELL_BYTES
    size = sum(e.compress_size for e in entries)
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
    except OSError:
        pass
    streamable = part is not None and part in names
    return Prescan(path, name, part, size, stream=streamable and estimate > limits.calamine_memory)


def _read_part(archive: zipfile.ZipFile, name: str) -> bytes:
    with archive.open(name) as part:
        data = part.read(_PART_LIMIT + 1)
    if len(data) > _PART_LIMIT:
        raise XlsxRefused(f"{name} is larger than {_size(_PART_LIMIT)}")
    return data


def _sheets(archive: zipfile.ZipFile, names: set[str]) -> list[tuple[str, str | None]]:
    """(name, ZIP path of its XML) of each sheet, in workbook order."""
    try:
        workbook = ElementTree.fromstring(_read_part(archive, _WORKBOOK))
        rels = ElementTree.fromstring(_read_part(archive, _WORKBOOK_RELS)) if _WORKBOOK_RELS in names else None
    except ElementTree.ParseError as error:
        raise XlsxRefused(f"not an XLSX workbook ({_WORKBOOK} is not valid XML: {error})") from None
    targets: dict[str, str] = {}
    for rel in rels if rels is not None else []:
        target = rel.get("Target", "")
        path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join("xl", target))
        targets[rel.get("Id", "")] = path
    return [
        (element.get("name", ""), targets.get(element.get(_REL_ID, "")))
        for element in workbook.iter()
        if element.tag.rsplit("}", 1)[-1] == "sheet"
    ]


def _declared_cells(archive: zipfile.ZipFile, part: str) -> tuple[int, int] | None:
    """(rows, columns) from the sheet's ``<dimension ref>``, reading only its first bytes."""
    with archive.open(part) as stream:
        head = stream.read(_DIMENSION_PEEK)
    found = _DIMENSION.search(head)
    if found is None:
        return None
    first_col, first_row, last_col, last_row = found.groups()
    if last_col is None:
        return 1, 1
    rows = int(last_row) - int(first_row) + 1
    cols = _column_number(last_col) - _column_number(first_col) + 1
    return max(rows, 1), max(cols, 1)


def _column_number(letters: bytes) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + letter - 64
    return number


def _size(count: float) -> str:
    return f"{count / MiB:,.0f} MiB"


# --- parent and child -----------------------------------------------------------------------


class _Head(msgspec.Struct, tag="head"):
    headers: list[str] | None
    width: int


class _Part(msgspec.Struct, tag="window"):
    window: Window


class _Fail(msgspec.Struct, tag="fail"):
    reason: str
    memory: bool = False


class _End(msgspec.Struct, tag="end"):
    pass


_Message = _Head | _Part | _Fail | _End


class _Child:
    """The parsing child process, seen from the parent: messages in, one at a time."""

    def __init__(self, path: str, found: Prescan, window_rows: int, header: bool | None, limits: XlsxLimits):
        self._limits = limits
        self._decoder = msgspec.msgpack.Decoder(_Message)
        job = _Job(path=path, found=found, window_rows=window_rows, header=header, memory_bytes=limits.memory_bytes)
        self._process = ChildProcess("workers.parsers.xlsx:_child_main", msgspec.json.encode(job))

    def receive(self) -> _Head | _Part | _End:
        try:
            message = self._decoder.decode(self._process.receive(self._limits.timeout_s))
        except TimeoutError:
            self.close()
            raise XlsxRefused(
                f"parsing the sheet took longer than {self._limits.timeout_s:,.0f} s: split it or export it as CSV"
            ) from None
        except ChildEnded as ended:
            self.close()
            raise XlsxRefused(self._death_reason(ended.returncode)) from None
        if isinstance(message, _Fail):
            self.close()
            if message.memory:
                raise XlsxRefused(self._memory_reason(""))
            raise ParseError(message.reason)
        return message

    def windows(self, first: Window) -> Iterator[Window]:
        try:
            yield first
            while not isinstance(message := self.receive(), _End):
                assert isinstance(message, _Part)
                yield message.window
        finally:
            self.close()

    def close(self) -> None:
        self._process.close()

    def _death_reason(self, code: int | None) -> str:
        if code is not None and code < 0:
            # RLIMIT_AS makes calamine's allocation fail, and Rust aborts on that (SIGABRT).
            return self._memory_reason(f" (the parser process was ended by {signal.Signals(-code).name})")
        return f"the XLSX parser process failed (exit status {code}); the worker's log has its error"

    def _memory_reason(self, how: str) -> str:
        return (
            f"the XLSX parser exceeded the memory limit of {_size(self._limits.memory_bytes)}{how}:"
            " the sheet is too large to parse; split it or export it as CSV"
        )


class _Job(msgspec.Struct, frozen=True):
    path: str
    found: Prescan
    window_rows: int
    header: bool | None
    memory_bytes: int


def _child_main(fd: int) -> None:
    """Entry point of the child: limit memory, then stream the sheet to the parent."""
    job_json, conn = child_channel(fd)
    job = msgspec.json.decode(job_json, type=_Job)
    resource.setrlimit(resource.RLIMIT_AS, (job.memory_bytes, job.memory_bytes))
    encoder = msgspec.msgpack.Encoder()
    try:
        import python_calamine

        try:
            records, total = _stream_records(job.found) if job.found.stream else _calamine_records(job.found)
            _send_sheet(conn, encoder, records, total, job.window_rows, job.header, job.found.size)
        except python_calamine.CalamineError as error:
            conn.send_bytes(encoder.encode(_Fail(f"the workbook cannot be read: {error}")))
        except ParseError as error:
            conn.send_bytes(encoder.encode(_Fail(f"the workbook cannot be read: {error}")))
    except MemoryError:
        conn.send_bytes(encoder.encode(_Fail("out of memory", memory=True)))
    finally:
        conn.close()


def _calamine_records(found: Prescan) -> tuple[Iterator[tuple[int, list[str]]], int]:
    """The sheet's non-empty rows as calamine reads them, and the number of its last row."""
    import python_calamine

    sheet = python_calamine.CalamineWorkbook.from_path(found.path).get_sheet_by_name(found.sheet)
    end = sheet.end
    # iter_rows starts at row 1 (empty rows before the first used one included) and at the first used column.
    return _records(sheet.iter_rows(), 1), end[0] + 1 if end else 1


def _stream_records(found: Prescan) -> tuple[Iterator[tuple[int, list[str]]], int]:
    """The same rows read from the sheet's XML as a stream, cut and padded to calamine's width."""
    from workers.parsers.xlsx_stream import stream_rows

    assert found.part is not None
    rows, declared = stream_rows(found.path, found.part)
    total = declared.last_row if declared is not None else 0
    first_rows = list(islice(rows, SNIFF_RECORDS))
    if declared is not None:
        first, last = declared.first_column, declared.last_column
    elif first_rows:
        # No <dimension>: the used columns of the first rows stand in for calamine's whole-sheet range.
        first = min(next(i for i, v in enumerate(values) if v != "") for _, values in first_rows)
        last = max(len(values) for _, values in first_rows) - 1
    else:
        first = last = 0
    return _padded(chain(first_rows, rows), first, last), total


def _padded(rows: Iterator[tuple[int, list[Any]]], first: int, last: int) -> Iterator[tuple[int, list[str]]]:
    width = last - first + 1
    for number, values in rows:
        if len(values) > last + 1 and any(v != "" for v in values[last + 1 :]):
            yield number, [_text(v) if type(v) is not str else v for v in values[first:]]
            continue
        cells = [v if type(v) is str else _text(v) for v in values[first : last + 1]]
        if len(cells) < width:
            cells.extend([""] * (width - len(cells)))
        if any(cells):
            yield number, cells


def _send_sheet(
    conn: Connection,
    encoder: msgspec.msgpack.Encoder,
    records: Iterator[tuple[int, list[str]]],
    total: int,
    window_rows: int,
    header: bool | None,
    size: int,
) -> None:
    sample = list(islice(records, SNIFF_RECORDS))
    if not sample:
        conn.send_bytes(encoder.encode(_End()))
        return
    # Both readers pad every row to the sheet's width.
    width = len(sample[0][1])
    if header is None:
        header = looks_like_header(sample[0][1], [values for _, values in sample[1:]])
    headers = None
    if header:
        headers = sample[0][1]
        sample = sample[1:]
    conn.send_bytes(encoder.encode(_Head(headers=headers, width=width)))
    rest = chain(sample, records)
    index = 0
    batch = list(islice(rest, window_rows))
    while batch:
        following = list(islice(rest, window_rows))
        # Progress is the share of the sheet's rows read; the last window has read the whole file.
        done = min(size, size * batch[-1][0] // total) if following and total else (0 if following else size)
        conn.send_bytes(encoder.encode(_Part(_window(index, batch, done, width))))
        index += 1
        batch = following
    conn.send_bytes(encoder.encode(_End()))


def _records(rows: Iterator[list[Any]], first: int) -> Iterator[tuple[int, list[str]]]:
    """(sheet row number, values as text) of each non-empty row."""
    for number, row in enumerate(rows, start=first):
        values = [v if type(v) is str else _text(v) for v in row]
        if any(values):
            yield number, values


def _window(index: int, batch: list[tuple[int, list[str]]], bytes_read: int, width: int) -> Window:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([number, *values] for number, values in batch)
    data = buffer.getvalue()
    good = [values for _, values in batch]
    rejects: list[Reject] = []
    if "\x00" in data or "\r" in data or any(len(values) != width for values in good):
        data, good, rejects = _careful(batch, width)
    return Window(
        index=index,
        first_row=batch[0][0],
        rows_read=len(batch),
        copy_data=data.encode("utf-8"),
        rows=[[v or None for v in values] for values in good] if index == 0 else None,
        rejects=rejects,
        bytes_read=bytes_read,
    )


def _careful(batch: list[tuple[int, list[str]]], width: int) -> tuple[str, list[list[str]], list[Reject]]:
    """The rare, per-row way: reject values holding NUL and rows with values past the sheet's
    declared width, quote values holding a carriage return (csv only quotes the characters of its
    own line terminator)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    lines: list[str] = []
    good: list[list[str]] = []
    rejects: list[Reject] = []
    for number, values in batch:
        if len(values) != width:
            reason = f"row {number:,}: has values past the sheet's declared dimension, which is {width:,} columns wide"
            rejects.append(Reject(number, reason, ",".join(values).replace("\x00", "\ufffd")))
            continue
        if any("\x00" in v for v in values):
            reason = f"row {number:,}: contains a NUL character, which PostgreSQL cannot store in text"
            rejects.append(Reject(number, reason, ",".join(values).replace("\x00", "\ufffd")))
            continue
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([number, *values])
        lines.append(buffer.getvalue()[:-2] + "\n")
        good.append(values)
    return "".join(lines), good, rejects


def _text(value: Any) -> str:
    """A cell value as text PostgreSQL's input functions take."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)
