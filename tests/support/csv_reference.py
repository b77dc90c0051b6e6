"""What a CSV file must become, worked out independently of the parser, and hypothesis strategies.

The reference reads records with a port of CPython's ``csv`` reader state machine (not strict),
checked against ``csv`` itself on every record, because ``csv`` does not say whether a field was
quoted or whether the file ended inside a quote. On top of it, the documented rules (README,
"What ends up in the table"): a UTF-8 BOM is not data; an empty line, or one of unquoted white
space when the table has several columns, is skipped and not counted; the header is row 1; a
record a quote left open to the end of the file, a record of another field count, a record holding
NUL are rejected (in that order of precedence); an unquoted empty field is NULL (None), a quoted
one the empty string; every other value is stored as ``csv`` reads it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from hypothesis import strategies as st

_START_RECORD, _START_FIELD, _IN_FIELD, _IN_QUOTED, _QUOTE_IN_QUOTED, _EAT_CRNL = range(6)
_EOL = object()


@dataclass
class Record:
    fields: list[tuple[str, bool]]
    """(value, quoted) pairs."""
    raw: str
    open: bool = False
    """The file ended inside a quoted field of this record."""


@dataclass
class Expected:
    width: int | None = None
    stored: list[tuple[int, list[str | None]]] = field(default_factory=list)
    rejects: list[tuple[int, str, str]] = field(default_factory=list)
    """(row number, reason, raw text)."""
    error: str | None = None
    """The ParseError message when the file cannot be read at all."""


def read_records(text: str, delimiter: str) -> list[Record]:
    records: list[Record] = []
    fields: list[tuple[str, bool]] = []
    value: list[str] = []
    quoted = False
    state = _START_RECORD
    raw: list[str] = []

    def save() -> None:
        nonlocal quoted
        fields.append(("".join(value), quoted))
        value.clear()
        quoted = False

    for line in io.StringIO(text, newline=""):
        raw.append(line)
        for c in [*line, _EOL]:
            if state == _START_RECORD:
                if c is _EOL:
                    break
                if c in "\r\n":
                    state = _EAT_CRNL
                    continue
                state = _START_FIELD
            if state == _START_FIELD:
                if c is _EOL or c in "\r\n":
                    save()
                    state = _START_RECORD if c is _EOL else _EAT_CRNL
                elif c == '"':
                    quoted = True
                    state = _IN_QUOTED
                elif c == delimiter:
                    save()
                else:
                    value.append(c)
                    state = _IN_FIELD
            elif state == _IN_FIELD:
                if c is _EOL or c in "\r\n":
                    save()
                    state = _START_RECORD if c is _EOL else _EAT_CRNL
                elif c == delimiter:
                    save()
                    state = _START_FIELD
                else:
                    value.append(c)
            elif state == _IN_QUOTED:
                if c is _EOL:
                    pass
                elif c == '"':
                    state = _QUOTE_IN_QUOTED
                else:
                    value.append(c)
            elif state == _QUOTE_IN_QUOTED:
                if c is not _EOL and c == '"':
                    value.append(c)
                    state = _IN_QUOTED
                elif c is not _EOL and c == delimiter:
                    save()
                    state = _START_FIELD
                elif c is _EOL or c in "\r\n":
                    save()
                    state = _START_RECORD if c is _EOL else _EAT_CRNL
                else:
                    value.append(c)
                    state = _IN_FIELD
            elif state == _EAT_CRNL:
                if c is _EOL:
                    state = _START_RECORD
                else:
                    assert c in "\r\n", "a line end in the middle of a line"
        if state == _START_RECORD:
            records.append(Record(fields, "".join(raw)))
            fields, raw = [], []
    if state != _START_RECORD:
        save()
        records.append(Record(fields, "".join(raw), open=True))
    python = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False))
    assert [[v for v, _ in r.fields] for r in records] == python, "the reference disagrees with csv"
    return records


def expected(data: bytes, *, delimiter: str, header: bool) -> Expected:
    text = data.decode("utf-8")
    text = text[1:] if text.startswith("\ufeff") else text
    out = Expected()
    row = 0
    named = False
    for record in read_records(text, delimiter):
        values = [v for v, _ in record.fields]
        whitespace = len(values) == 1 and not record.fields[0][1] and not values[0].strip()
        if not values or (whitespace and out.width != 1):
            continue
        row += 1
        raw = record.raw.rstrip("\r\n").replace("\x00", "\ufffd")
        if header and not named:
            if record.open:
                out.error = "the header record cannot be read: the quote opened on row 1 is never closed"
                return out
            named, out.width = True, len(values)
            continue
        if out.width is None:
            out.width = len(values)
        if record.open:
            out.rejects.append((row, f"row {row:,}: the quote opened on row {row:,} is never closed before the end of the file", raw))
        elif len(values) != out.width:
            has = "header has" if header else "the first record has"
            noun = "field" if len(values) == 1 else "fields"
            out.rejects.append((row, f"row {row:,}: {len(values)} {noun}, {has} {out.width}", raw))
        elif any("\x00" in v for v in values):
            reason = f"row {row:,}: contains a NUL byte (0x00), which PostgreSQL cannot store in text"
            out.rejects.append((row, reason, raw))
        else:
            out.stored.append((row, [v if v or quoted else None for v, quoted in record.fields]))
    return out


def read_copy(data: bytes) -> list[list[str | None]]:
    """COPY ... (FORMAT csv) text read as PostgreSQL reads it (a quote anywhere toggles quoting;
    a field with no quote that is empty is NULL); only line ends outside quotes end a record."""
    rows: list[list[str | None]] = []
    text = data.decode("utf-8")
    at, n = 0, len(text)
    while at < n:
        values: list[str | None] = []
        while True:
            chars: list[str] = []
            saw_quote = in_quote = False
            while at < n:
                c = text[at]
                at += 1
                if in_quote:
                    if c == '"':
                        if at < n and text[at] == '"':
                            chars.append('"')
                            at += 1
                        else:
                            in_quote = False
                    else:
                        chars.append(c)
                elif c == '"':
                    in_quote = saw_quote = True
                elif c in ",\n":
                    at -= 1
                    break
                else:
                    assert c != "\r", "a bare CR outside quotes in COPY text"
                    chars.append(c)
            assert not in_quote, "COPY text ends inside a quoted field"
            values.append("".join(chars) if chars or saw_quote else None)
            if at < n and text[at] == ",":
                at += 1
                continue
            at += 1  # the line end
            break
        rows.append(values)
    return rows


_TOKENS = ["a", "1", "0", " ", ",", ";", "\t", '"', '""', "\n", "\r", "\r\n", "\x00", "é", "-"]


@st.composite
def csv_bytes(draw: st.DrawFn) -> tuple[bytes, str]:
    """Random CSV-ish bytes and their delimiter: token soup, or rows of fields with every kind of
    quoting and damage (ragged rows, stray and unclosed quotes, NUL, every line end, no final one)."""
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    if draw(st.booleans()):
        text = "".join(draw(st.lists(st.sampled_from(_TOKENS), max_size=40)))
    else:
        width = draw(st.integers(1, 4))
        plain = st.text(st.sampled_from(["a", "1", "0", " ", "é", "-", "\x00"]), max_size=4)
        inside = st.text(st.sampled_from(["a", "1", " ", ",", ";", "\t", '"', "\n", "\r"]), max_size=5)
        cell = st.one_of(
            plain,
            inside.map(lambda v: '"' + v.replace('"', '""') + '"'),
            st.just('""'),
            st.just(""),
            st.sampled_from(['x"y', '"a"b', '"', ' "q"']),
        )
        lines = []
        for _ in range(draw(st.integers(0, 6))):
            count = draw(st.sampled_from([width, width, width, width - 1, width + 1, 0]))
            end = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
            lines.append(delimiter.join(draw(st.lists(cell, min_size=count, max_size=count))) + end)
        text = "".join(lines)
        if lines and draw(st.booleans()):
            text = text.rstrip("\r\n")
    if draw(st.booleans()):
        text = "\ufeff" + text
    return text.encode("utf-8"), delimiter
