"""XLSX sheets of any size in flat memory: the sheet's XML read as a stream from its ZIP entry.

calamine decodes a whole sheet before its first row (about 90 bytes a cell), so a sheet whose
declared size does not fit the memory budget is read here instead: lxml's C pull parser over the
decompressing ZIP entry, one ``<row>`` at a time (each freed once read), the shared-strings
table loaded once. Values are typed exactly as python-calamine types them (the rules below are
calamine's ``read_v``, ``detect_custom_number_format`` and ``ExcelDateTime::as_datetime``), so
both readers give the same rows for the same workbook.
"""

from __future__ import annotations

import datetime
import math
import posixpath
import re
import zipfile
from collections.abc import Iterator
from typing import Any, NamedTuple

from lxml import etree

from workers.parsers.types import ParseError

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_SHARED_STRINGS_TYPE = _REL + "/sharedStrings"
_STYLES_TYPE = _REL + "/styles"
_MS_PER_DAY = 86_400_000
_EPOCH = datetime.datetime(1899, 12, 30)
_1904_OFFSET = 1462.0
_ESCAPE = re.compile(r"_x00([0-9A-Fa-f]{2})_")
_DIGITS = "0123456789"
_DATETIME, _TIMEDELTA = 1, 2
_BUILTIN_FORMATS = {**{n: _DATETIME for n in (*range(14, 23), 45, 47)}, 46: _TIMEDELTA}


class Dimension(NamedTuple):
    """A sheet's declared ``<dimension>``: 0-based columns, 1-based last row."""

    first_column: int
    last_column: int
    last_row: int


def stream_rows(path: str, part: str) -> tuple[Iterator[tuple[int, list[Any]]], Dimension | None]:
    """(Excel row number, cell values by column) of each row of the sheet at ``part``, and the
    sheet's ``<dimension>`` when it declares one.

    Values are what python-calamine gives: str, float, bool, date, datetime, time, timedelta, or
    ``""`` for an empty cell; a row's list holds its cells from column A (index 0) on, unpadded.
    """
    archive = zipfile.ZipFile(path)
    try:
        rels = _relationships(archive, "xl/_rels/workbook.xml.rels", "xl")
        strings = _shared_strings(archive, rels.get(_SHARED_STRINGS_TYPE, "xl/sharedStrings.xml"))
        formats = _cell_formats(archive, rels.get(_STYLES_TYPE, "xl/styles.xml"))
        is_1904 = _is_1904(archive)
    except BaseException:
        archive.close()
        raise
    return _rows(archive, part, strings, formats, is_1904), _dimension(archive, part)


def _rows(
    archive: zipfile.ZipFile, part: str, strings: list[str], formats: list[int], is_1904: bool
) -> Iterator[tuple[int, list[Any]]]:
    letters: dict[str, int] = {}
    number = 0
    try:
        with archive.open(part) as stream:
            events = etree.iterparse(stream, events=("end",), tag="{*}row", huge_tree=True, remove_comments=True)
            for _, row in events:
                ns = row.tag[: -len("row")]
                value_tag, inline_tag, formula_tag = ns + "v", ns + "is", ns + "f"
                r = row.get("r")
                number = int(r) if r else number + 1
                values: list[Any] = []
                column = -1
                for cell in row:
                    ref = cell.get("r")
                    if ref:
                        name = ref.rstrip(_DIGITS)
                        index = letters.get(name)
                        if index is None:
                            index = letters[name] = _column_index(name)
                        column = index
                    else:
                        column += 1
                    value = _cell(cell, value_tag, inline_tag, formula_tag, strings, formats, is_1904)
                    if value == "":
                        continue
                    if column >= len(values):
                        values.extend([""] * (column + 1 - len(values)))
                    values[column] = value
                # Free the row and every earlier sibling: memory stays one row whatever the sheet's size.
                row.clear()
                parent = row.getparent()
                if parent is not None:
                    while row.getprevious() is not None:
                        del parent[0]
                if values:
                    yield number, values
    except etree.XMLSyntaxError as error:
        raise ParseError(f"the sheet's XML cannot be read near row {number + 1:,}: {error}") from None
    finally:
        archive.close()


def _cell(
    cell: Any, value_tag: str, inline_tag: str, formula_tag: str, strings: list[str], formats: list[int], is_1904: bool
) -> Any:
    """The value of one ``<c>`` as calamine reads it (``read_value`` / ``read_v``)."""
    kind = cell.get("t")
    raw: str | None = None
    for child in cell:
        tag = child.tag
        if tag == value_tag:
            if kind in ("inlineStr", "is"):
                continue
            raw = child.text or ""
        elif tag == inline_tag:
            if len(child) == 1:
                only = child[0]
                if only.tag == inline_tag[:-2] + "t" and not only.attrib:
                    text = (only.text or "").strip(" \t\r\n")  # the common case: one plain <t>
                    return _ESCAPE.sub(_unescape, text) if "_x00" in text else text
            return _string_item(child)
        elif tag != formula_tag:
            raise ParseError(f"cell {cell.get('r') or '?'} holds an unexpected <{etree.QName(tag).localname}> element")
    if raw is None:
        return ""
    if kind == "s":
        if not raw:
            return ""
        try:
            return strings[int(raw)]
        except (ValueError, IndexError):
            raise ParseError(f"cell {cell.get('r') or '?'}: string {raw} is not in the shared strings table") from None
    if kind is None or kind == "n":
        if not raw:
            return ""
        try:
            number = float(raw)
        except ValueError:
            if kind is None:
                return raw
            raise ParseError(f"cell {cell.get('r') or '?'}: {raw!r} is not a number") from None
        style = cell.get("s")
        if style is None:
            return number
        index = int(style) if style.isdigit() else 0
        if index >= len(formats):
            return number
        return _dated(number, formats[index], is_1904) if formats[index] else number
    if kind == "b":
        return raw != "0"
    if kind == "str":
        return raw
    if kind == "e":
        return ""
    if kind == "d":
        return _iso_date(raw)
    raise ParseError(f"cell {cell.get('r') or '?'} has an unknown type t={kind!r}")


def _dated(value: float, fmt: int, is_1904: bool) -> Any:
    """A number in a date or duration format, as python-calamine converts ``Data::DateTime``."""
    if fmt == _TIMEDELTA:
        return datetime.timedelta(milliseconds=_round(value * _MS_PER_DAY))
    days = value + _1904_OFFSET if is_1904 else value
    if days < 60.0:
        days += 1.0  # Excel's phantom 1900-02-29
    try:
        moment = _EPOCH + datetime.timedelta(milliseconds=_round(days * _MS_PER_DAY))
    except OverflowError:
        return value
    if value < 1.0:
        return moment.time()
    if not 1 <= moment.year <= 9999:
        return value
    if value == float(int(value)):
        return moment.date()
    return moment


def _round(value: float) -> int:
    """Rust's ``f64::round``: halves away from zero (Python's ``round`` goes to even)."""
    return int(math.floor(value + 0.5)) if value >= 0 else -int(math.floor(-value + 0.5))


def _iso_date(text: str) -> Any:
    """A ``t="d"`` cell: ISO 8601 text, as calamine's ``DateTimeIso`` reaches Python."""
    try:
        if "T" in text:
            return datetime.datetime.fromisoformat(text)
        if ":" in text:
            return datetime.time.fromisoformat(text)
        return datetime.date.fromisoformat(text)
    except ValueError:
        return text


def _string_item(element: Any) -> str:
    """The text of an ``<si>`` or ``<is>``: its runs' ``<t>`` joined, phonetic runs left out."""
    parts: list[str] = []
    for t in element.iter("{*}t"):
        parent = t.getparent()
        if parent is not None and etree.QName(parent).localname == "rPh":
            continue
        text = t.text or ""
        if t.get("{http://www.w3.org/XML/1998/namespace}space") != "preserve":
            text = text.strip(" \t\r\n")
        parts.append(text)
    text = "".join(parts)
    return _ESCAPE.sub(_unescape, text) if "_x00" in text else text


def _unescape(match: re.Match[str]) -> str:
    return chr(int(match.group(1), 16))


def _shared_strings(archive: zipfile.ZipFile, part: str) -> list[str]:
    if part not in archive.NameToInfo:
        return []
    strings: list[str] = []
    with archive.open(part) as stream:
        for _, item in etree.iterparse(stream, events=("end",), tag="{*}si", huge_tree=True):
            strings.append(_string_item(item))
            item.clear()
            while item.getprevious() is not None:
                del item.getparent()[0]
    return strings


def _cell_formats(archive: zipfile.ZipFile, part: str) -> list[int]:
    """For each cell style (``<cellXfs>``), whether its number format is a date, a duration or neither."""
    if part not in archive.NameToInfo:
        return []
    root = etree.fromstring(archive.read(part), etree.XMLParser(huge_tree=True))
    custom = {fmt.get("numFmtId"): fmt.get("formatCode", "") for fmt in root.iterfind("{*}numFmts/{*}numFmt")}
    formats: list[int] = []
    for xf in root.iterfind("{*}cellXfs/{*}xf"):
        fmt_id = xf.get("numFmtId")
        if fmt_id is None:
            formats.append(0)
        elif fmt_id in custom:
            formats.append(_custom_format(custom[fmt_id]))
        else:
            formats.append(_BUILTIN_FORMATS.get(int(fmt_id), 0) if fmt_id.isdigit() else 0)
    return formats


def _custom_format(code: str) -> int:
    """calamine's ``detect_custom_number_format``: the first section's tokens outside quotes and brackets."""
    escaped = quoted = ampm = hms = False
    brackets = 0
    previous = " "
    for char in code:
        if escaped:
            escaped = False
        elif char in "_\\*":
            escaped = True
        elif quoted:
            if char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char == ";":
            return 0
        elif char == "[":
            brackets += 1
        elif char == "]" and brackets == 1 and hms:
            return _TIMEDELTA
        elif char == "]":
            brackets = max(brackets - 1, 0)
        elif char in "aA" and not ampm and brackets == 0:
            ampm = True
        elif char in "pm/PM" and ampm and brackets == 0:
            return _DATETIME
        elif char in "dmhysDMHYS" and not ampm and brackets == 0:
            return _DATETIME
        elif not (hms and char.lower() == previous.lower()):
            hms = previous == "[" and char in "mhsMHS"
        previous = char
    return 0


def _relationships(archive: zipfile.ZipFile, part: str, base: str) -> dict[str, str]:
    """Relationship type → target part (the first of each type)."""
    if part not in archive.NameToInfo:
        return {}
    found: dict[str, str] = {}
    for rel in etree.fromstring(archive.read(part)).iterfind("{*}Relationship"):
        target = rel.get("Target", "")
        path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join(base, target))
        found.setdefault(rel.get("Type", ""), path)
    return found


def _is_1904(archive: zipfile.ZipFile) -> bool:
    root = etree.fromstring(archive.read("xl/workbook.xml"), etree.XMLParser(huge_tree=True))
    properties = root.find("{*}workbookPr")
    return properties is not None and properties.get("date1904", "").lower() in ("1", "true")


_DIMENSION = re.compile(rb'<(?:\w+:)?dimension\s+ref="\$?([A-Z]{1,3})\$?([0-9]+)(?::\$?([A-Z]{1,3})\$?([0-9]+))?"')


def _dimension(archive: zipfile.ZipFile, part: str) -> Dimension | None:
    with archive.open(part) as stream:
        head = stream.read(64 * 1024)
    found = _DIMENSION.search(head)
    if found is None:
        return None
    first_col, first_row, last_col, last_row = (g.decode() if g else None for g in found.groups())
    first = _column_index(first_col or "A")
    return Dimension(first, _column_index(last_col) if last_col else first, int(last_row or first_row or 1))


def _column_index(letters: str) -> int:
    """0 for A, 25 for Z, 26 for AA."""
    number = 0
    for letter in letters.upper():
        number = number * 26 + ord(letter) - 64
    return number - 1
