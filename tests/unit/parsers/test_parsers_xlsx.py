"""XLSX parser: typed values, sheets, pre-scan refusals and the child's memory limit."""

from __future__ import annotations

import csv
import datetime
import io
import zipfile
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter

from workers.parsers import ParseError, XlsxLimits, XlsxRefused, open_xlsx, prescan_xlsx

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    "</Types>"
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    ' xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="Big" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
    "</Relationships>"
)


def raw_xlsx(path: Path, sheet_xml: bytes, extra: dict[str, bytes] | None = None) -> str:
    """A minimal workbook written with zipfile, for what xlsxwriter will not produce."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _RELS)
        archive.writestr("xl/workbook.xml", _WORKBOOK)
        archive.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        archive.writestr("xl/worksheets/sheet1.xml", sheet_xml)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return str(path)


def sheet_xml(rows: int, cols: int, dimension: str | None = None) -> bytes:
    letters = [chr(65 + i) for i in range(cols)]
    ref = dimension or f"A1:{letters[-1]}{rows}"
    body = io.StringIO()
    body.write('<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">')
    body.write(f'<dimension ref="{ref}"/><sheetData>')
    for r in range(1, rows + 1):
        body.write(f'<row r="{r}">')
        for c, letter in enumerate(letters):
            body.write(f'<c r="{letter}{r}"><v>{r * 10 + c}.25</v></c>')
        body.write("</row>")
    body.write("</sheetData></worksheet>")
    return body.getvalue().encode()


def records(windows: list) -> list[list[str]]:
    return [r for w in windows for r in csv.reader(io.StringIO(w.copy_data.decode(), newline=""))]


@pytest.fixture
def typed(tmp_path: Path) -> str:
    path = tmp_path / "typed.xlsx"
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet("People")
    day = workbook.add_format({"num_format": "yyyy-mm-dd"})
    stamp = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    sheet.write_row(0, 0, ["Name", "Age", "Score", "Born", "Seen", "Active", "Note"])
    sheet.write_row(1, 0, ["Ann", 34, 1.5, None, None, True, 'says "hi", twice\nthen leaves'])
    sheet.write_datetime(1, 3, datetime.date(1990, 5, 17), day)
    sheet.write_datetime(1, 4, datetime.datetime(2024, 1, 2, 3, 4, 5), stamp)
    # Row 3 stays empty: skipped, and row numbers stay the sheet's.
    sheet.write_row(3, 0, ["Bob", 41.0, 2, None, None, False, None])
    sheet.write_datetime(3, 3, datetime.date(1983, 1, 1), day)
    sheet.write_datetime(3, 4, datetime.datetime(2024, 2, 3, 4, 5, 6), stamp)
    other = workbook.add_worksheet("Other")
    other.write_row(0, 0, ["k", "v"])
    other.write_row(1, 0, ["a", 1])
    workbook.close()
    return str(path)


def test_typed_values_become_postgresql_text(typed: str) -> None:
    table, iterator = open_xlsx(typed, window_rows=1000)
    windows = list(iterator)
    assert [(c.name, c.pg_type) for c in table.columns] == [
        ("name", "text"),
        ("age", "bigint"),
        ("score", "numeric"),
        ("born", "date"),
        ("seen", "timestamp"),
        ("active", "boolean"),
        ("note", "text"),
    ]
    assert records(windows) == [
        ["2", "Ann", "34", "1.5", "1990-05-17", "2024-01-02 03:04:05", "true", 'says "hi", twice\nthen leaves'],
        ["4", "Bob", "41", "2", "1983-01-01", "2024-02-03 04:05:06", "false", ""],
    ]
    assert windows[0].first_row == 2 and windows[0].rows_read == 2
    assert windows[0].rows is not None and windows[0].rows[1][-1] is None
    assert windows[-1].bytes_read == Path(typed).stat().st_size


def test_sheet_option_and_unknown_sheet(typed: str) -> None:
    table, iterator = open_xlsx(typed, window_rows=1, sheet="Other")
    assert [c.name for c in table.columns] == ["k", "v"]
    assert records(list(iterator)) == [["2", "a", "1"]]
    with pytest.raises(ParseError, match="sheet 'Nope' not found; the workbook has: People, Other"):
        open_xlsx(typed, window_rows=10, sheet="Nope")


def test_windows_of_a_sheet(tmp_path: Path) -> None:
    path = raw_xlsx(tmp_path / "w.xlsx", sheet_xml(7, 2))
    table, iterator = open_xlsx(path, window_rows=3, header=False)
    windows = list(iterator)
    assert [(w.index, w.first_row, w.rows_read) for w in windows] == [(0, 1, 3), (1, 4, 3), (2, 7, 1)]
    assert [c.pg_type for c in table.columns] == ["numeric", "numeric"]
    assert [w.rows is None for w in windows] == [False, True, True]


def test_zip_bomb_is_refused_before_parsing(tmp_path: Path) -> None:
    path = raw_xlsx(tmp_path / "bomb.xlsx", sheet_xml(2, 2), {"xl/media/padding.bin": b"\0" * (32 * 1024 * 1024)})
    with pytest.raises(XlsxRefused, match=r"xl/media/padding.bin expands [0-9,]+× \(limit 100×\): refusing a possible zip bomb"):
        open_xlsx(path, window_rows=10)


def test_total_size_and_entry_count_limits(tmp_path: Path) -> None:
    path = raw_xlsx(tmp_path / "many.xlsx", sheet_xml(2, 2), {f"xl/x{i}.xml": b"<x/>" for i in range(20)})
    with pytest.raises(XlsxRefused, match="ZIP entries"):
        prescan_xlsx(path, XlsxLimits(max_entries=10))
    with pytest.raises(XlsxRefused, match="expands to"):
        prescan_xlsx(path, XlsxLimits(max_uncompressed=100))


def test_declared_dimension_over_the_cell_limit_is_refused(tmp_path: Path) -> None:
    path = raw_xlsx(tmp_path / "wide.xlsx", sheet_xml(2, 2, dimension="A1:Z1000000"))
    with pytest.raises(XlsxRefused, match=r"sheet 'Big' declares 1,000,000 rows × 26 columns = 26,000,000 cells"):
        open_xlsx(path, window_rows=10, limits=XlsxLimits(max_cells=20_000_000))


def test_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "no.xlsx"
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(XlsxRefused, match="not an XLSX workbook"):
        open_xlsx(str(path), window_rows=10)
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as archive:
        archive.writestr("a.txt", "x")
    with pytest.raises(XlsxRefused, match="no xl/workbook.xml"):
        open_xlsx(str(tmp_path / "empty.zip"), window_rows=10)


def test_child_over_its_memory_limit_is_refused_not_a_crash(tmp_path: Path) -> None:
    path = raw_xlsx(tmp_path / "heavy.xlsx", sheet_xml(80_000, 8))
    limits = XlsxLimits(memory_bytes=60 * 1024 * 1024)
    with pytest.raises(XlsxRefused, match="exceeded the memory limit of 60 MiB"):
        table, iterator = open_xlsx(path, window_rows=1000, limits=limits)
        list(iterator)
    # The same limit is enough for a small sheet: the refusal was about this sheet's size.
    small = raw_xlsx(tmp_path / "small.xlsx", sheet_xml(3, 2))
    _, iterator = open_xlsx(small, window_rows=1000, limits=limits)
    assert sum(w.rows_read for w in iterator) == 3


def test_empty_sheet(tmp_path: Path) -> None:
    path = raw_xlsx(tmp_path / "empty.xlsx", b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData/></worksheet>')
    table, iterator = open_xlsx(path, window_rows=10)
    assert table.columns == [] and list(iterator) == []


# --- the streaming reader -------------------------------------------------------------------

CALAMINE = XlsxLimits(calamine_memory=1 << 40)
STREAM = XlsxLimits(calamine_memory=0)


def both(path: str, **options: object) -> tuple[object, list, object, list]:
    """The table and windows of each reader; the streaming one must give exactly calamine's."""
    table_c, windows_c = open_xlsx(path, limits=CALAMINE, **options)  # type: ignore[arg-type]
    calamine = list(windows_c)
    table_s, windows_s = open_xlsx(path, limits=STREAM, **options)  # type: ignore[arg-type]
    return table_c, calamine, table_s, list(windows_s)


def test_the_streaming_reader_is_chosen_above_the_calamine_budget(typed: str) -> None:
    assert not prescan_xlsx(typed, CALAMINE).stream
    assert prescan_xlsx(typed, STREAM).stream
    table_c, calamine, table_s, streamed = both(typed, window_rows=1)
    assert table_s == table_c
    assert streamed == calamine and len(streamed) == 2


def test_both_readers_type_every_kind_of_cell_the_same(tmp_path: Path) -> None:
    path = str(tmp_path / "kinds.xlsx")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Kinds"
    formats = ["General", "yyyy-mm-dd", "dd/mm/yyyy hh:mm", "h:mm:ss", "[h]:mm:ss", "0.00%", '"day" d', "#,##0.00", "mmm-yy"]
    sheet.append(["n", "text", "number", "when", "flag", "formatted"])
    for i in range(1, 400):
        value = [
            i * 1.5 - 7,
            45123.25 + i,
            0.375 + i / 1000,
            1.5 + i,
            i / 7,
            45000 + i,
            float(i),
            1234567.891 * i,
            45000 + i / 3,
        ][i % 9]
        sheet.append([i, f"  spaced {i}  " if i % 5 == 0 else f"text_x000D_{i}", value, None, i % 2 == 0, f"=A{i + 1}*2"])
        sheet.cell(row=i + 1, column=3).number_format = formats[i % 9]
        if i % 4 == 0:
            sheet.cell(row=i + 1, column=4).value = datetime.datetime(2024, 2, 29, 23, 59, 59, 500000)
            sheet.cell(row=i + 1, column=4).number_format = "yyyy-mm-dd hh:mm:ss.000"
        elif i % 4 == 1:
            sheet.cell(row=i + 1, column=4).value = datetime.date(1900, 1, 1) + datetime.timedelta(days=i)
        elif i % 4 == 2:
            sheet.cell(row=i + 1, column=4).value = datetime.time(13, 14, 15)
    sheet.cell(row=50, column=8).value = "past the header"
    book.save(path)
    table_c, calamine, table_s, streamed = both(path, window_rows=37)
    assert table_s == table_c
    assert streamed == calamine
    assert sum(w.rows_read for w in streamed) == 399


def test_both_readers_agree_on_xlsxwriter_sheets_that_start_late(tmp_path: Path) -> None:
    path = str(tmp_path / "late.xlsx")
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet("Late")
    sheet.write_row(2, 1, ["id", "label", "ok"])
    for i in range(3, 2000):
        if i % 100 == 0:
            continue  # an empty row: skipped by both, row numbers kept
        sheet.write_row(i, 1, [i, f"label {i}\r\nline two" if i % 250 == 0 else f"label {i}", i % 3 == 0])
    sheet.write_string(5, 2, "")
    sheet.write_formula(7, 2, "=1/0")
    book.close()
    table_c, calamine, table_s, streamed = both(path, window_rows=500)
    assert table_s == table_c and [c.name for c in table_s.columns] == ["id", "label", "ok"]
    assert streamed == calamine
    assert streamed[0].first_row == 4


def test_a_1904_workbook_and_inline_strings(tmp_path: Path) -> None:
    cells = "".join(
        f'<row r="{r}"><c r="A{r}" t="inlineStr"><is><r><t>in</t></r><r><t xml:space="preserve"> line {r}</t></r></is></c>'
        f'<c r="B{r}" s="1"><v>{30000 + r}.5</v></c><c r="C{r}" t="b"><v>{r % 2}</v></c></row>'
        for r in range(1, 60)
    )
    sheet = (
        '<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        f'<dimension ref="A1:C59"/><sheetData>{cells}</sheetData></worksheet>'
    ).encode()
    styles = (
        '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        '<numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy\\-mm\\-dd\\ h:mm"/></numFmts>'
        '<cellXfs count="2"><xf numFmtId="0"/><xf numFmtId="164"/></cellXfs></styleSheet>'
    ).encode()
    path = raw_xlsx(tmp_path / "1904.xlsx", sheet, {"xl/styles.xml": styles})
    with zipfile.ZipFile(path, "a") as archive:
        workbook = archive.read("xl/workbook.xml").replace(b"<sheets>", b'<workbookPr date1904="1"/><sheets>')
    rebuilt = tmp_path / "1904b.xlsx"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(rebuilt, "w") as target:
        for item in source.infolist():
            if item.filename != "xl/workbook.xml":
                target.writestr(item, source.read(item.filename))
        target.writestr("xl/workbook.xml", workbook)
    table_c, calamine, table_s, streamed = both(str(rebuilt), window_rows=20, header=False)
    assert streamed == calamine
    assert records(streamed)[0] == ["1", "in line 1", "1986-02-20 12:00:00", "true"]
