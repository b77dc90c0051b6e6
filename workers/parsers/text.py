"""Streaming CSV/TSV parser: a byte stream in, windows of COPY-ready CSV out, in bounded memory.

The fast path never re-serialises a record: ``csv.reader`` parses each record (to count and check
its fields) while a ``tee`` of the same line iterator hands over the record's original text, which
goes to COPY as it was, behind its row number. Everything that needs per-value Python work is
either in a rare branch (a record of the wrong width or a suspiciously long one) or checked once
per window on the joined text with C-speed string operations (NUL bytes, quoting PostgreSQL would
read differently from Python); only the records that fail such a check are rebuilt.

Windows after the first take a faster way when they can: a block of ``window_rows`` lines whose
quoted sections (stripped with one regex) hold no line end, whose every line has the header's
field count and which is COPY-safe is passed through with a few C-speed calls per window, no
Python work per record; anything else goes record by record. Both give the same window.

Row numbers count records as a person does: the header record is row 1, the first data record
row 2 (row 1 when there is no header). Blank lines are skipped and not counted; a record spanning
several lines (quoted newlines) is one row.

The values are what Python's ``csv`` (not strict) reads, byte for byte, whatever the window size:
a quote inside an unquoted field is a character (``x"y``), an unquoted empty field is NULL and a
quoted one (``""``) the empty string, as PostgreSQL reads CSV. A record that a quote left open
until the end of the file is rejected (``csv`` would return it), so is a record holding NUL.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from collections.abc import Iterator
from functools import partial
from itertools import chain, islice, repeat, tee
from typing import BinaryIO

from workers.parsers.types import (
    Column,
    ParseError,
    Reject,
    Table,
    Window,
    comma_to_dot,
    decimal_comma_columns,
    infer_types,
    looks_like_header,
    sanitize_columns,
)

HEAD_BYTES = 64 * 1024
"""Bytes sniffed for the encoding, the delimiter and the header."""
LINE_LIMIT = 64 * 1024 * 1024
"""Characters: the longest physical line read at once and the longest field ``csv`` collects."""
MAX_FIELD_BYTES = 8 * 1024 * 1024
RAW_LIMIT = 64 * 1024
"""Characters of a rejected record's text kept in its Reject."""
READ_BUFFER = 1024 * 1024
DELIMITERS = (",", "\t", ";", "|")
SNIFF_RECORDS = 100
_EOL = "\r\n"
_LATIN1_FALLBACK = "sluice-latin-1-fallback"
_BOMS = (
    (codecs.BOM_UTF8, "utf-8", ("utf-8", "utf-8-sig")),
    (codecs.BOM_UTF16_LE, "utf-16-le", ("utf-16-le", "utf-16")),
    (codecs.BOM_UTF16_BE, "utf-16-be", ("utf-16-be", "utf-16")),
)
# Joined good records (each "row,fields...\n") whose every quote opens a field after a comma,
# closes it before a comma or line end, or is doubled inside it: PostgreSQL's CSV reader and
# Python's agree on such text. Possessive runs keep the match linear and mostly in C.
_COPY_SAFE = re.compile(r'[^"]*+(?:(?<=,)"[^"]*+(?:""[^"]*+)*+"(?=[,\n]|\Z)[^"]*+)*+')
# A quoted section ("" inside it makes two adjacent sections): removed, it leaves the delimiters
# that separate fields, once the text is known to be COPY-safe.
_QUOTED = re.compile(r'"[^"]*+"')


def _field_pattern(delimiter: str) -> re.Pattern[str]:
    """One field as ``csv`` (not strict) reads it: a quoted section (``""`` inside it is a quote;
    ``closed`` is empty when the text ends inside it) and the characters up to the delimiter
    after it, or a plain field in which quotes are characters."""
    stop = re.escape(delimiter)
    return re.compile(rf'"(?P<quoted>[^"]*+(?:""[^"]*+)*+)(?P<closed>"?)(?P<tail>[^{stop}\r\n]*+)|(?P<plain>[^{stop}\r\n]*+)')


_COPY_FIELD = _field_pattern(",")


def _latin1_fallback(error: UnicodeError) -> tuple[str, int]:
    # Mixed files (UTF-8 with a few Latin-1 bytes) keep every byte instead of failing the job.
    assert isinstance(error, UnicodeDecodeError)
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error(_LATIN1_FALLBACK, _latin1_fallback)


def open_csv(
    source: BinaryIO,
    *,
    window_rows: int,
    encoding: str | None = None,
    delimiter: str | None = None,
    header: bool | None = None,
    max_field_bytes: int = MAX_FIELD_BYTES,
    select: list[int] | None = None,
    decimal: str | None = None,
) -> tuple[Table, Iterator[Window]]:
    """Sniff and open a CSV/TSV byte stream; returns its table and an iterator of windows.

    ``source`` only needs ``read(n)``; it is read once, front to back, never whole. The first
    window is parsed here (its rows are the type inference sample), so a file with no records
    returns a table without columns and no windows. ``encoding``, ``delimiter`` and ``header``
    override what is sniffed; ``select`` keeps these column indexes, in this order. A field over
    ``max_field_bytes`` (UTF-8) rejects its record. ``decimal`` (``"."``, ``","`` or None to detect)
    picks the columns whose decimal-comma numbers are converted (see ``decimal_comma_columns``).
    Raises ParseError when the file cannot be read
    at all (unknown encoding, undecodable bytes in a strict encoding, unreadable header).
    """
    if window_rows < 1:
        raise ValueError("window_rows must be at least 1")
    if not 1 <= max_field_bytes <= LINE_LIMIT:
        raise ValueError(f"max_field_bytes must be between 1 and {LINE_LIMIT}")
    if decimal not in (None, ".", ","):
        raise ValueError("decimal must be '.', ',' or None")
    if delimiter is not None and (len(delimiter) != 1 or delimiter in '"\r\n'):
        raise ParseError(f"delimiter {delimiter!r} cannot be used: give one character other than a quote or newline")
    # The limit is process-wide: it only ever goes up, so parsers on other threads are not hurt.
    csv.field_size_limit(max(csv.field_size_limit(), LINE_LIMIT))

    head = _read_head(source)
    codec, errors, skip = _choose_encoding(head, encoding)
    complete = len(head) < HEAD_BYTES
    sample = _sample_lines(head[skip:].decode(codec, "replace"), complete)
    if delimiter is None:
        delimiter = _sniff_delimiter(sample)
    records = _sample_records(sample, delimiter)
    if header is None:
        header = looks_like_header(records[0], records[1:]) if records else True

    counted = _Counted(source, head[skip:], len(head))
    text = io.TextIOWrapper(io.BufferedReader(counted, READ_BUFFER), encoding=codec, errors=errors, newline="")
    parser = _Parser(text, counted, delimiter, window_rows, max_field_bytes, select, decimal)
    headers = parser.read_header() if header else None
    first = parser.window(0, want_rows=True)
    if parser.width is None:
        return Table(columns=[], has_header=False, encoding=codec, delimiter=delimiter), iter(())
    if headers is None:
        headers = [f"col_{i}" for i in range(1, parser.width + 1)]
    order = parser.order
    types = infer_types(first.rows or [], len(order)) if first else ["text"] * len(order)
    names = sanitize_columns(headers)
    commas = set(parser.decimal_at)
    columns = [
        Column(name=names[i], header=headers[i], pg_type=t, decimal_comma=j in commas)
        for j, (i, t) in enumerate(zip(order, types, strict=True))
    ]
    table = Table(columns=columns, has_header=bool(header), encoding=codec, delimiter=delimiter)
    if first is None:
        return table, iter(())
    return table, chain([first], parser.windows(1))


class _Counted(io.RawIOBase):
    """The source as a raw stream: replays the sniffed head, then reads on, counting bytes."""

    def __init__(self, source: BinaryIO, head: bytes, consumed: int) -> None:
        super().__init__()
        self._source = source
        self._head = head
        self.consumed = consumed

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._source.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self.consumed += size
        return size


class _Lines:
    """Physical lines of the text (line ends kept); lines taken for a look can be given back."""

    def __init__(self, text: io.TextIOWrapper) -> None:
        self._readline = partial(text.readline, LINE_LIMIT)
        self._back: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._back:
            return self._back.pop()
        line = self._readline()
        if not line:
            raise StopIteration
        return line

    def take(self, count: int) -> list[str]:
        return list(islice(self, count))

    def give_back(self, lines: list[str]) -> None:
        self._back.extend(reversed(lines))


class _Parser:
    """Records of one stream, cut into windows; state carries over from window to window."""

    def __init__(
        self,
        text: io.TextIOWrapper,
        counted: _Counted,
        delimiter: str,
        window_rows: int,
        max_field_bytes: int,
        select: list[int] | None,
        decimal: str | None = None,
    ) -> None:
        # The record-by-record path reads through the tee; between its windows both branches stand
        # at the same line, so the fast path may take lines from the source directly.
        self._source = _Lines(text)
        self._lines, self._raw = tee(self._source)
        self._reader = csv.reader(self._lines, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
        self._counted = counted
        self._delimiter = delimiter
        self._window_rows = window_rows
        self._max_field_bytes = max_field_bytes
        # A record shorter than this (in characters) cannot hold a field over the byte limit.
        self._suspect = max(max_field_bytes // 4, 1)
        self._select = select
        self._passthrough = delimiter == "," and select is None
        self._field = _field_pattern(delimiter)
        self._buffer = io.StringIO()
        # "\r\n" as terminator makes csv quote fields holding either character; it is cut off after.
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")
        self._decimal = decimal
        self.decimal_at: list[int] = []
        """Positions (in table order) of the decimal-comma columns, chosen on window 0."""
        self.width: int | None = None
        self._names: list[str] | None = None
        self._row = 0
        self._line = 0
        self._eof = False

    @property
    def order(self) -> list[int]:
        assert self.width is not None
        return self._select if self._select is not None else list(range(self.width))

    def read_header(self) -> list[str] | None:
        """Consume the first non-blank record as the header; None when there is none."""
        try:
            for fields in self._reader:
                raw = self._take()
                if _blank(fields, raw):
                    continue
                if self._truncated(raw):
                    raise ParseError(f"the header record is longer than {LINE_LIMIT:,} characters")
                if self._left_open(raw):
                    raise ParseError("the header record cannot be read: the quote opened on row 1 is never closed")
                self._row = 1
                self._set_width(fields)
                self._names = fields
                return fields
        except csv.Error as error:
            raise ParseError(f"the header record cannot be read: {error}") from None
        except UnicodeDecodeError as error:
            raise _undecodable(error) from None
        self._eof = True
        return None

    def windows(self, start: int) -> Iterator[Window]:
        index = start
        while (window := self.window(index, want_rows=False)) is not None:
            yield window
            index += 1

    def window(self, index: int, *, want_rows: bool) -> Window | None:
        """The next ``window_rows`` records, or None at the end of the file."""
        if self._eof:
            return None
        if not want_rows and self._passthrough and self.width is not None and self.width > 1:
            fast = self._fast_window(index)
            if fast is not None:
                return fast
        try:
            parts, rejects = self._read()
        except UnicodeDecodeError as error:
            raise _undecodable(error) from None
        read = len(parts) + len(rejects)
        if read == 0:
            return None
        first_row = self._row - read + 1
        data = "".join(parts)
        if "\x00" in data:
            parts = self._drop_nul(parts, rejects)
            data = "".join(parts)
        if self._passthrough and '"' in data and not _COPY_SAFE.fullmatch(data):
            parts = [p if '"' not in p or _COPY_SAFE.fullmatch(p) else self._rebuild(p) for p in parts]
            data = "".join(parts)
        rows = None
        if want_rows:
            records = [_fields(p[:-1], _COPY_FIELD, ",")[0] for p in parts]
            rows = [[None if not (v or quoted) else v for v, quoted in r[1:]] for r in records]
            if self._choose_decimal(rows):
                for record in records:
                    for at in self.decimal_at:
                        value, quoted = record[at + 1]
                        record[at + 1] = (comma_to_dot(value), quoted)
                data = "".join(map(_copy_line, records))
                rows = [[None if not (v or quoted) else v for v, quoted in r[1:]] for r in records]
        rejects.sort(key=lambda r: r.row_number)
        return Window(
            index=index,
            first_row=first_row,
            rows_read=read,
            copy_data=data.encode("utf-8"),
            rows=rows,
            rejects=rejects,
            bytes_read=self._counted.consumed,
        )

    def _choose_decimal(self, rows: list[list[str | None]]) -> bool:
        """Decide the decimal-comma columns from the inference sample; True when there are any.

        Only then do records take the converting path: without them no value costs anything more.
        """
        assert self.width is not None
        width = len(self._select) if self._select is not None else self.width
        flags = decimal_comma_columns(rows, width, decimal=self._decimal, delimiter=self._delimiter)
        self.decimal_at = [i for i, flag in enumerate(flags) if flag]
        if not self.decimal_at:
            return False
        self._passthrough = False
        self._convert = self._convert_decimal  # type: ignore[method-assign]
        return True

    def _fast_window(self, index: int) -> Window | None:
        """The next window if its ``window_rows`` lines are all plain records (see the module
        docstring); otherwise None, with the lines given back for the record-by-record path."""
        block = self._source.take(self._window_rows)
        data = self._plain(block) if len(block) == self._window_rows else None
        if data is None:
            self._source.give_back(block)
            return None
        first = self._row + 1
        self._row += len(block)
        return Window(
            index=index,
            first_row=first,
            rows_read=len(block),
            copy_data=data.encode("utf-8"),
            rows=None,
            rejects=[],
            bytes_read=self._counted.consumed,
        )

    def _plain(self, block: list[str]) -> str | None:
        """The COPY text of ``block`` if each line is one record of the right width, which the
        record-by-record path would pass through unchanged; None when any line needs a closer look."""
        assert self.width is not None
        text = "".join(block)
        returns = text.count("\r")
        if "\x00" in text or (returns and (returns != len(block) or text.count("\r\n") != returns)):
            return None
        if max(map(len, block)) > self._suspect:
            return None
        # Field counts first (cheap, and where ragged windows fail); the count of a stripped line is
        # the field count once the text proves COPY-safe below, and every check must pass anyway.
        lines = (_QUOTED.sub("", text) if '"' in text else text).split("\n")
        # A line end inside quotes would show as fewer lines; the last line must end the block.
        if len(lines) != len(block) + 1 or lines[-1]:
            return None
        lines.pop()
        if set(map(str.count, lines, repeat(self._delimiter))) != {self.width - 1}:
            return None
        data = "".join(map("{},{}".format, range(self._row + 1, self._row + 1 + len(block)), block))
        if returns:
            data = data.replace("\r\n", "\n")
        if '"' in data and not _COPY_SAFE.fullmatch(data):
            return None
        return data

    def _read(self) -> tuple[list[str], list[Reject]]:
        """Parse up to ``window_rows`` records: the good ones as COPY lines, the others as rejects.

        This is the hot loop: one length test per record, the rest in rare branches.
        """
        reader, raw_lines, take = self._reader, self._raw, next
        passthrough, suspect, width = self._passthrough, self._suspect, self.width
        row, line, target, eol = self._row, self._line, self._window_rows, _EOL
        parts: list[str] = []
        rejects: list[Reject] = []
        raw = None
        read = 0
        while read < target:
            try:
                for fields in reader:
                    now = reader.line_num
                    raw = take(raw_lines) if now - line == 1 else "".join(islice(raw_lines, now - line))
                    line = now
                    if len(fields) != width or len(raw) > suspect:
                        if not fields or (width != 1 and _blank(fields, raw)):
                            continue
                        if width is None:
                            width = self._set_width(fields)
                        row += 1
                        read += 1
                        problem = self._check(row, fields, raw)
                        if problem is not None:
                            rejects.append(problem)
                            if read == target:
                                break
                            continue
                    else:
                        row += 1
                        read += 1
                    if passthrough:
                        parts.append(f"{row},{raw.rstrip(eol)}\n")
                    else:
                        converted = self._convert(row, fields, raw)
                        if isinstance(converted, Reject):
                            rejects.append(converted)
                        else:
                            parts.append(converted)
                    if read == target:
                        break
                else:
                    self._eof = True
                break
            except csv.Error as error:
                # csv gave up inside a record: the lines it took so far are that record.
                now = reader.line_num
                taken = "".join(islice(raw_lines, now - line))
                line = now
                row += 1
                read += 1
                text = self._discard_rest(taken)
                raw = None
                limit = "field larger than field limit" in str(error)
                reason = f"a field is longer than {LINE_LIMIT:,} characters" if limit else f"cannot be parsed: {error}"
                rejects.append(Reject(row, f"row {row:,}: {reason}", text))
        self._row, self._line = row, line
        if not self._eof:
            # Only the file's last record can end inside a quote; see whether this one was it.
            ahead = self._source.take(1)
            if ahead:
                self._source.give_back(ahead)
            else:
                self._eof = True
        if self._eof and raw is not None and self._left_open(raw):
            if parts and parts[-1].startswith(f"{row},"):
                parts.pop()
            elif rejects and rejects[-1].row_number == row:
                rejects.pop()
            reason = f"row {row:,}: the quote opened on row {row:,} is never closed before the end of the file"
            rejects.append(Reject(row, reason, _clip(raw.rstrip(_EOL))))
        return parts, rejects

    def _set_width(self, fields: list[str]) -> int:
        self.width = len(fields)
        if self._select is not None and any(not 0 <= i < self.width for i in self._select):
            raise ParseError(f"select names a column index outside 0..{self.width - 1}")
        return self.width

    def _take(self) -> str:
        """The raw text of the record the reader just returned."""
        now = self._reader.line_num
        raw = "".join(islice(self._raw, now - self._line))
        self._line = now
        return raw

    def _check(self, row: int, fields: list[str], raw: str) -> Reject | None:
        """Why a record that failed the quick test is rejected, or None when it is fine after all."""
        if self._truncated(raw):
            text = self._discard_rest(raw)
            return Reject(row, f"row {row:,}: a line is longer than {LINE_LIMIT:,} characters", text)
        if len(fields) != self.width:
            has = "header has" if self._names is not None else "the first record has"
            noun = "field" if len(fields) == 1 else "fields"
            return Reject(row, f"row {row:,}: {len(fields)} {noun}, {has} {self.width}", _clip(raw.rstrip(_EOL)))
        for number, value in enumerate(fields, start=1):
            if len(value) * 4 > self._max_field_bytes and len(value.encode("utf-8")) > self._max_field_bytes:
                name = f" ({self._names[number - 1]})" if self._names else ""
                size = len(value.encode("utf-8"))
                reason = f"row {row:,}: field {number}{name} is {size:,} bytes, over the limit of {self._max_field_bytes:,}"
                return Reject(row, reason, _clip(raw.rstrip(_EOL)))
        return None

    def _truncated(self, raw: str) -> bool:
        # readline(LINE_LIMIT) cut a longer line: the record ends without a line end.
        return len(raw) >= LINE_LIMIT and not raw.endswith(("\n", "\r"))

    def _discard_rest(self, raw: str) -> str:
        """Skip the rest of a broken record: to the end of its line, and of its quoted field if one
        is open (judged by quote parity). Returns the record's text, clipped."""
        kept = raw[:RAW_LIMIT]
        size = len(raw)
        open_quote = raw.count('"') % 2 == 1
        ended = raw.endswith(("\n", "\r"))
        while open_quote or not ended:
            chunk = next(self._lines, None)
            if chunk is None:
                self._eof = True
                break
            next(self._raw)
            if len(kept) < RAW_LIMIT:
                kept += chunk[: RAW_LIMIT - len(kept)]
            size += len(chunk)
            open_quote ^= chunk.count('"') % 2 == 1
            ended = chunk.endswith(("\n", "\r"))
        return _clip(kept.rstrip(_EOL), size)

    def _convert(self, row: int, fields: list[str], raw: str) -> str | Reject:
        """A COPY line for a record of another dialect, or with selected columns."""
        if "\x00" in raw:
            return _nul_reject(row, raw)
        if self._select is None and "," not in raw and '"' not in raw:
            return f"{row},{raw.rstrip(_EOL).replace(self._delimiter, ',')}\n"
        if "" in fields and '""' in raw:
            # csv loses whether an empty field was quoted (the empty string) or not (NULL).
            pairs = _fields(raw.rstrip(_EOL), self._field, self._delimiter)[0]
            chosen = pairs if self._select is None else [pairs[i] for i in self._select]
            return _copy_line([(str(row), False), *chosen])
        if self._select is None:
            return self._serialise([str(row), *fields])
        return self._serialise([str(row), *(fields[i] for i in self._select)])

    def _convert_decimal(self, row: int, fields: list[str], raw: str) -> str | Reject:
        """``_convert`` with the values of the decimal-comma columns as PostgreSQL reads numbers."""
        if "\x00" in raw:
            return _nul_reject(row, raw)
        if "" in fields and '""' in raw:
            pairs = _fields(raw.rstrip(_EOL), self._field, self._delimiter)[0]
            chosen = pairs if self._select is None else [pairs[i] for i in self._select]
            for at in self.decimal_at:
                value, quoted = chosen[at]
                chosen[at] = (comma_to_dot(value), quoted)
            return _copy_line([(str(row), False), *chosen])
        values = fields if self._select is None else [fields[i] for i in self._select]
        for at in self.decimal_at:
            values[at] = comma_to_dot(values[at])
        line = ",".join(values)
        if '"' not in raw and line.count(",") == len(values) - 1:
            # No quote and no comma left in any value: the joined values are the COPY line as they are.
            return f"{row},{line}\n"
        return self._serialise([str(row), *values])

    def _serialise(self, values: list[str]) -> str:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(values)
        return self._buffer.getvalue()[:-2] + "\n"

    def _rebuild(self, part: str) -> str:
        """Re-serialise one passed-through COPY line whose quoting PostgreSQL would misread."""
        return _copy_line(_fields(part[:-1], _COPY_FIELD, ",")[0])

    def _drop_nul(self, parts: list[str], rejects: list[Reject]) -> list[str]:
        kept: list[str] = []
        for part in parts:
            if "\x00" in part:
                number, _, raw = part.partition(",")
                rejects.append(_nul_reject(int(number), raw))
            else:
                kept.append(part)
        return kept

    def _left_open(self, raw: str) -> bool:
        """Whether a record ``csv`` returned ends inside a quoted field (the file ended in it)."""
        return '"' in raw and _fields(raw, self._field, self._delimiter)[1]


def _blank(fields: list[str], raw: str) -> bool:
    """A record with no fields, or a line of nothing but unquoted white space."""
    return not fields or (len(fields) == 1 and not fields[0].strip() and '"' not in raw)


def _fields(record: str, field: re.Pattern[str], delimiter: str) -> tuple[list[tuple[str, bool]], bool]:
    """The (value, quoted) fields of one record's text as ``csv`` reads them, and whether the text
    ends inside a quoted field. Only for the few records where ``csv`` loses what is needed."""
    pairs: list[tuple[str, bool]] = []
    at, end, match = 0, len(record), field.match
    while True:
        found = match(record, at)
        assert found is not None  # every alternative can match the empty string
        quoted = found["quoted"]
        if quoted is None:
            pairs.append((found["plain"], False))
        else:
            pairs.append((quoted.replace('""', '"') + found["tail"], True))
            if not found["closed"]:
                return pairs, True
        at = found.end()
        if at >= end or record[at] != delimiter:
            return pairs, False
        at += 1


def _copy_line(pairs: list[tuple[str, bool]]) -> str:
    """A COPY CSV line of (value, quoted) fields: a quoted empty field stays the empty string."""
    out = []
    for value, quoted in pairs:
        if (value or not quoted) and not any(c in value for c in ',"\r\n'):
            out.append(value)
        else:
            out.append('"' + value.replace('"', '""') + '"')
    return ",".join(out) + "\n"


def _nul_reject(row: int, raw: str) -> Reject:
    reason = f"row {row:,}: contains a NUL byte (0x00), which PostgreSQL cannot store in text"
    return Reject(row, reason, _clip(raw.rstrip(_EOL)))


def _clip(raw: str, size: int | None = None) -> str:
    """Reject text as stored: at most RAW_LIMIT characters, NUL shown as U+FFFD (text cannot hold it)."""
    size = len(raw) if size is None else size
    text = raw[:RAW_LIMIT].replace("\x00", "\ufffd")
    if size > RAW_LIMIT:
        text += f"… ({size - RAW_LIMIT:,} more characters)"
    return text


def _undecodable(error: UnicodeDecodeError) -> ParseError:
    return ParseError(
        f"the file is not valid {error.encoding}: {error.reason} ({error.object[error.start:error.start + 4]!r});"
        " give the right encoding"
    )


def _read_head(source: BinaryIO) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < HEAD_BYTES:
        chunk = source.read(HEAD_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _choose_encoding(head: bytes, override: str | None) -> tuple[str, str, int]:
    """(codec, decode error handler, BOM bytes to skip). A BOM decides unless ``override`` is given."""
    bom = next(((mark, codec, family) for mark, codec, family in _BOMS if head.startswith(mark)), None)
    if override is not None:
        try:
            name = codecs.lookup(override).name
        except LookupError:
            raise ParseError(f"unknown encoding {override!r}") from None
        if bom is not None and name in bom[2]:
            # The BOM is not data; decode the rest with the BOM's own byte order.
            return bom[1], _handler(bom[1]), len(bom[0])
        return name, _handler(name), 0
    if bom is not None:
        return bom[1], _handler(bom[1]), len(bom[0])
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < HEAD_BYTES)
    except UnicodeDecodeError:
        return "iso8859-1", "strict", 0
    return "utf-8", _handler("utf-8"), 0


def _handler(codec: str) -> str:
    return _LATIN1_FALLBACK if codec in ("utf-8", "utf-8-sig") else "strict"


def _sample_lines(text: str, complete: bool) -> str:
    """The sniffed text cut after its last complete line (unless it is the whole file)."""
    if complete:
        return text
    cut = max(text.rfind("\n"), text.rfind("\r"))
    return text[: cut + 1] if cut >= 0 else text


def _sample_records(text: str, delimiter: str) -> list[list[str]]:
    records: list[list[str]] = []
    try:
        for fields in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            if not _blank(fields, ""):
                records.append(fields)
                if len(records) == SNIFF_RECORDS:
                    break
    except csv.Error:
        pass
    return records


def _sniff_delimiter(text: str) -> str:
    """The candidate that splits the sample's records most consistently into the most fields.

    csv.Sniffer guesses from character frequencies and is easily fooled by text columns; here
    each candidate parses the sample for real and the share of records with the usual field
    count decides, then that count; a candidate giving one field per record never wins. Comma
    when nothing splits.
    """
    best, best_key = ",", (0.0, 0)
    for candidate in DELIMITERS:
        counts = [len(r) for r in _sample_records(text, candidate)]
        if not counts:
            continue
        usual, times = Counter(counts).most_common(1)[0]
        key = (times / len(counts), usual)
        if usual >= 2 and key > best_key:
            best, best_key = candidate, key
    return best
