"""What the parsers hand to the sink, and the per-value helpers they share.

The structs are the contract between a parser and the dataset sink. The helpers (type inference,
column naming, header detection) run on a sample only, never on every row of a file.
"""

from __future__ import annotations

import datetime
import math
import re

import msgspec

from db.sql import column_name, truncate_name

ROW_COLUMN = "_row"
"""The sink's own column (the row number); no file column is ever given this name."""
MAX_NAME_BYTES = 63
"""PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1)."""
NUMERIC_DIGITS = 38
"""Longest plain decimal inferred as ``numeric``; longer ones stay text."""


class ParseError(Exception):
    """The file cannot be parsed at all; the message says why, for a person."""


class Reject(msgspec.Struct, frozen=True):
    """A record that is not stored: its row number, why, and its text as the file had it."""

    row_number: int
    reason: str
    raw: str


class Window(msgspec.Struct):
    """A run of consecutive records, ready for one ``COPY ... (FORMAT csv)``.

    ``copy_data`` holds the good records as UTF-8 CSV (comma, ``"`` quote, ``\\n`` line ends),
    each with its row number as the FIRST field (for the sink's ``_row`` column), then the
    columns in table order. An empty unquoted field is NULL; a quoted empty string is ``""``.
    Every record read is either in ``copy_data`` or in ``rejects``:
    ``rows_read == copy_data records + len(rejects)``.
    """

    index: int
    """0-based; the same file and options always give the same windows (a checkpoint key)."""
    first_row: int
    """Row number of the first record in the window (header record = row 1)."""
    rows_read: int
    copy_data: bytes
    rows: list[list[str | None]] | None
    """Values of the good records (empty field = None); only in window 0, the inference sample."""
    rejects: list[Reject]
    bytes_read: int
    """Bytes of the source consumed so far (monotonic; the source's size after the last window)."""


class Column(msgspec.Struct, frozen=True):
    name: str
    """Sanitised: lower snake_case, unique, 1 to 63 bytes, never ``_row``."""
    header: str
    """As the file's header had it (``col_N`` when the file has no header)."""
    pg_type: str
    """Inferred from window 0: bigint, numeric, double precision, boolean, date, timestamp, timestamptz or text."""
    decimal_comma: bool = False
    """Its numbers are written with a decimal comma (``1.234,50``); the parser gives them to COPY as ``1234.50``."""


class Table(msgspec.Struct, frozen=True):
    """What a parser found before the first window: columns (with inferred types) and dialect."""

    columns: list[Column]
    """Empty when the file has no records at all (the caller fails the job: "file is empty")."""
    has_header: bool
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    """XLSX: the name of the sheet read."""

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


# --- type inference -------------------------------------------------------------------------

_INT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][+-]?[0-9]{1,3}")
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_TIMESTAMP = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]{1,6})?)?"
    r"(Z|[+-]([0-9]{2})(?::?([0-9]{2}))?)?"
)
_TRUE_WORDS = frozenset({"true", "t", "yes"})
_FALSE_WORDS = frozenset({"false", "f", "no"})
_BOOLEANS = _TRUE_WORDS | _FALSE_WORDS
YES_NO = frozenset({"yes", "no"})
"""Boolean words a job may keep as text instead (``yes_no_boolean: false``)."""
_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1

# The kinds a single value can be, and what a column of two kinds widens to.
BIGINT, NUMERIC, DOUBLE = "bigint", "numeric", "double precision"
BOOLEAN, DATE, TIMESTAMP, TIMESTAMPTZ, TEXT = "boolean", "date", "timestamp", "timestamptz", "text"
_WIDER = {
    frozenset({BIGINT, NUMERIC}): NUMERIC,
    frozenset({BIGINT, DOUBLE}): DOUBLE,
    frozenset({NUMERIC, DOUBLE}): DOUBLE,
    frozenset({DATE, TIMESTAMP}): TIMESTAMP,
    frozenset({DATE, TIMESTAMPTZ}): TIMESTAMPTZ,
}


def value_type(value: str) -> str:
    """The narrowest PostgreSQL type whose input function accepts ``value`` unchanged.

    Conservative on purpose: a value PostgreSQL would accept but that could lose what the file
    says (leading zeros of an identifier, a DateStyle-dependent date) is text.
    """
    if _INT.fullmatch(value):
        if _BIGINT_MIN <= int(value) <= _BIGINT_MAX:
            return BIGINT
        return NUMERIC if len(value.lstrip("+-")) <= NUMERIC_DIGITS else TEXT
    if _DECIMAL.fullmatch(value):
        return NUMERIC if sum(c.isdigit() for c in value) <= NUMERIC_DIGITS else TEXT
    if _FLOAT.fullmatch(value):
        number = float(value)
        mantissa = value.lower().split("e")[0]
        underflow = number == 0.0 and mantissa.strip("+-.0") != ""
        # PostgreSQL refuses what rounds to infinity, to zero, or to a subnormal number.
        return DOUBLE if math.isfinite(number) and not underflow and (number == 0 or abs(number) >= 2.3e-308) else TEXT
    if value.lower() in _BOOLEANS:
        return BOOLEAN
    if len(value) == 10 and _DATE.fullmatch(value):
        return DATE if _valid_date(value) else TEXT
    found = _TIMESTAMP.fullmatch(value)
    if found and _valid_timestamp(found):
        # Without an offset the file says nothing about the zone: stored as written.
        return TIMESTAMPTZ if found.group(5) else TIMESTAMP
    return TEXT


def _valid_date(value: str) -> bool:
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _valid_timestamp(found: re.Match[str]) -> bool:
    day, hour, minute, second, zone, zone_hours, zone_minutes = found.groups()
    if not _valid_date(day) or int(hour) > 23 or int(minute) > 59 or int(second or 0) > 59:
        return False
    if zone and zone != "Z" and (int(zone_hours) > 14 or int(zone_minutes or 0) > 59):
        return False
    return True


def widen(current: str | None, kind: str) -> str:
    """The narrowest type holding values of type ``current`` and ``kind`` (a timestamp beside a
    timestamptz is text: one zone cannot be made up for values the file gave none)."""
    if current is None or current == kind:
        return kind
    return _WIDER.get(frozenset({current, kind}), TEXT)


def boolean_words(values: list[str | None]) -> tuple[str, str]:
    """How ``values`` spell true and false (``("yes", "no")``, ``("True", "False")``…), so a
    boolean column widened to text gets its words back; lower-case true/false when they do not say."""
    true_word = false_word = None
    for value in values:
        if not value:
            continue
        lowered = value.lower()
        if true_word is None and lowered in _TRUE_WORDS:
            true_word = value
        elif false_word is None and lowered in _FALSE_WORDS:
            false_word = value
        if true_word is not None and false_word is not None:
            break
    return (true_word or _partner(false_word, "true"), false_word or _partner(true_word, "false"))


_PARTNERS = {"true": "false", "t": "f", "yes": "no"}
_PARTNERS.update({v: k for k, v in _PARTNERS.items()})


def _partner(word: str | None, default: str) -> str:
    """The other word of ``word``'s pair, in its case (``No`` for ``Yes``)."""
    if word is None:
        return default
    other = _PARTNERS[word.lower()]
    if word.isupper():
        return other.upper()
    return other.capitalize() if word[0].isupper() else other


def infer_types(rows: list[list[str | None]], columns: int) -> list[str]:
    """PostgreSQL type names, one per column, that accept every non-empty value in ``rows``.

    Policy: integers in bigint range → bigint; plain decimals (and larger integers) of up to 38
    digits → numeric (exact); exponent notation → double precision (numeric beside it widens to
    double precision); true/false/t/f/yes/no in any case → boolean; ISO ``YYYY-MM-DD`` → date;
    ISO 8601 date and time (``T`` or space, optional seconds and fraction) → timestamp (without
    time zone, as written), with an offset or ``Z`` → timestamptz (dates beside either widen to
    it; timestamps with and without an offset together are text); anything else → text. Empty
    and None values are ignored; a column with no values at all is text. Rows shorter than
    ``columns`` are fine.
    """
    types: list[str] = []
    for index in range(columns):
        current: str | None = None
        for row in rows:
            value = row[index] if index < len(row) else None
            if not value:
                continue
            current = widen(current, value_type(value))
            if current == TEXT:
                break
        types.append(current or TEXT)
    return types


# --- decimal commas ------------------------------------------------------------------------

_DETECT_COMMA = re.compile(r"-?[0-9]{1,3}(?:\.[0-9]{3})*,[0-9]+|-?[0-9]+,[0-9]+")
"""A decimal-comma number as detection requires it: a comma, and dots only as thousands separators."""
_COMMA_NUMBER = re.compile(r"-?(?:[0-9]{1,3}(?:\.[0-9]{3})+(?:,[0-9]+)?|[0-9]+,[0-9]+)")
"""A number as written with a decimal comma, including one with thousands dots and no decimals (``1.234``)."""


def comma_to_dot(value: str) -> str:
    """``value`` as PostgreSQL reads numbers when it is a decimal-comma number (``-1.234,50`` →
    ``-1234.50``); any other value unchanged."""
    if _COMMA_NUMBER.fullmatch(value):
        return value.replace(".", "").replace(",", ".")
    return value


def decimal_comma_columns(rows: list[list[str | None]], columns: int, *, decimal: str | None, delimiter: str) -> list[bool]:
    """Which columns of the inference sample hold decimal-comma numbers.

    ``decimal`` is the job's option: ``"."`` never, ``","`` every column whose values are all
    numbers when read with a decimal comma (decimal-comma numbers or integers, at least one
    value), ``None`` detects: only when the delimiter is not a comma, no value of the sample is a
    plain dot decimal (``1.5``, or ``1.234`` that could be a thousands dot), and the column's every
    value is a decimal-comma number (``1,50``, ``-3,25``, ``1.234,50``).
    """
    if decimal == "." or (decimal is None and delimiter == ","):
        return [False] * columns
    values = [[v for row in rows if index < len(row) and (v := row[index])] for index in range(columns)]
    if decimal is None:
        if any(_DECIMAL.fullmatch(v) for column in values for v in column):
            return [False] * columns
        return [bool(column) and all(_DETECT_COMMA.fullmatch(v) for v in column) for column in values]
    return [
        bool(column) and all(_COMMA_NUMBER.fullmatch(v) or _INT.fullmatch(v) for v in column) for column in values
    ]


# --- column names ---------------------------------------------------------------------------

def sanitize_columns(names: list[str]) -> list[str]:
    """Turn header texts into column names: lower snake_case, unique, 1 to 63 bytes.

    Runs of characters other than letters and digits become one ``_`` (trimmed at both ends,
    so no name is ever the sink's ``_row``); a leading digit gets a ``c_`` prefix; an empty name
    becomes ``col_<position>``; repeats get ``_2``, ``_3``… in file order.
    """
    base = [column_name(raw) or f"col_{position}" for position, raw in enumerate(names, start=1)]
    taken = set(base) | {ROW_COLUMN}
    seen: set[str] = set()
    out: list[str] = []
    for name in base:
        if name in seen:
            number = 2
            while True:
                suffix = f"_{number}"
                candidate = truncate_name(name, MAX_NAME_BYTES - len(suffix)) + suffix
                if candidate not in taken:
                    break
                number += 1
            name = candidate
            taken.add(name)
        seen.add(name)
        out.append(name)
    return out


# --- header detection -----------------------------------------------------------------------


def looks_like_header(first: list[str], rest: list[list[str]]) -> bool:
    """Whether ``first`` (a file's first record) is a header, judged against the records after it.

    It is, when some column has a text value on top of non-text values below (``amount`` over
    numbers). It is not, when some value of it is empty or itself not text (a number, date,
    boolean) and no column says otherwise. With no evidence either way (all-text columns), it is.
    """
    evidence_against = False
    for index, value in enumerate(first):
        if not value.strip():
            evidence_against = True
            continue
        if value_type(value) != TEXT:
            evidence_against = True
            continue
        if infer_types([[row[index] if index < len(row) else None] for row in rest], 1)[0] != TEXT:
            return True
    return not evidence_against
