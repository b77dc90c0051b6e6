from __future__ import annotations

import codecs
import gzip
import io
import secrets
import zipfile

import openpyxl
import pytest

from app.files.detect import HEAD_BYTES, TAIL_BYTES, Tail, confirm, detect
from db.models import FileKind


@pytest.mark.parametrize(
    ("head", "kind", "encoding"),
    [
        (b"a,b\n1,2\n", FileKind.csv, "utf-8"),
        (codecs.BOM_UTF8 + b"a;b\n1;2\n", FileKind.csv, "utf-8-sig"),
        ("a\tb\n1\t2\n".encode("utf-16-le"), FileKind.other, None),
        (codecs.BOM_UTF16_LE + "a\tb\n1\t2\n".encode("utf-16-le"), FileKind.tsv, "utf-16-le"),
        (codecs.BOM_UTF16_BE + "a,b\n1,2\n".encode("utf-16-be"), FileKind.csv, "utf-16-be"),
        ("ciudad\nMálaga\n".encode("latin-1"), FileKind.csv, "latin-1"),
        # A whole file that starts like a workbook but has no central directory is not one.
        (b"PK\x03\x04" + bytes(22) + b"\x13\x00\x00\x00[Content_Types].xml....xl/workbook.xml", FileKind.other, None),
        (b"PK\x03\x04....word/document.xml", FileKind.other, None),
        (b"\x7fELF\x02\x01\x01" + bytes(100), FileKind.other, None),
    ],
)
def test_detect(head: bytes, kind: FileKind, encoding: str | None) -> None:
    found = detect(head, complete=True)
    assert found.kind == kind
    assert found.encoding == encoding


def test_a_head_cut_inside_a_utf8_character_is_still_utf8() -> None:
    head = "name\nJosé\n".encode()[:-2]
    assert detect(head, complete=False).encoding == "utf-8"
    assert detect(head, complete=True).encoding == "latin-1"


def test_commas_win_over_a_stray_tab() -> None:
    assert detect(b"a,b,c\tx\n1,2,3\t4\n", complete=True).kind == FileKind.csv


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def _ends(data: bytes, piece: int) -> bytes:
    tail = Tail()
    for start in range(0, len(data), piece):
        tail.feed(data[start : start + piece])
    return tail.value()


def test_an_openpyxl_workbook_is_provisional_until_its_central_directory_confirms_it() -> None:
    book = openpyxl.Workbook()
    for i in range(5000):
        book.active.append([i, f"name {i}", i * 1.5])
    buffer = io.BytesIO()
    book.save(buffer)
    data = buffer.getvalue()
    assert len(data) > HEAD_BYTES and b"xl/workbook.xml" not in data[:HEAD_BYTES]

    found = detect(data[:HEAD_BYTES], complete=False)
    assert (found.kind, found.provisional) == (FileKind.xlsx, True)
    assert confirm(_ends(data, 7000), len(data)) is None
    assert detect(data, complete=True).kind == FileKind.xlsx


def test_an_ooxml_zip_without_a_workbook_is_refused_at_the_end() -> None:
    random = secrets.token_bytes(200_000)  # incompressible: the document is well past the head
    data = _zip([("[Content_Types].xml", b"<Types/>"), ("word/media/image1.bin", random), ("word/document.xml", b"<w/>")])
    assert detect(data[:HEAD_BYTES], complete=False).provisional
    reason = confirm(_ends(data, 65536), len(data))
    assert reason is not None and "not an XLSX workbook (it has no xl/workbook.xml)" in reason
    assert detect(data, complete=True).kind == FileKind.other


def test_a_cut_zip_and_a_zip_of_other_things_are_refused() -> None:
    data = _zip([("docProps/app.xml", b"<x/>"), ("xl/workbook.xml", b"<w/>"), ("pad.bin", secrets.token_bytes(100_000))])
    assert confirm(data[:-10], len(data) - 10) is not None
    assert detect(_zip([("photo.jpg", b"\xff\xd8")]), complete=True).kind == FileKind.other
    assert detect(_zip([("photo.jpg", b"\xff\xd8" * 50_000)])[:HEAD_BYTES], complete=False).kind == FileKind.other


def test_the_tail_keeps_exactly_the_last_bytes() -> None:
    data = secrets.token_bytes(TAIL_BYTES * 2 + 12345)
    for piece in (4096, 65536, TAIL_BYTES + 1, len(data)):
        assert _ends(data, piece) == data[-TAIL_BYTES:]
    tail = Tail(limit=3000)
    for byte in data[-5000:]:
        tail.feed(bytes([byte]))
    assert tail.value() == data[-3000:]


def test_gzip_is_judged_by_what_it_decompresses_to() -> None:
    text = "ciudad;año\nMálaga;2024\n".encode("latin-1") * 20_000
    found = detect(gzip.compress(text)[:HEAD_BYTES], complete=False)
    assert (found.kind, found.encoding, found.gzip) == (FileKind.csv, "latin-1", True)
    assert found.content_type == "application/gzip"
    assert detect(gzip.compress(b"a\tb\n1\t2\n"), complete=True).kind == FileKind.tsv
    assert detect(gzip.compress(bytes(range(256)) * 100), complete=True).kind == FileKind.other
    assert detect(b"\x1f\x8b\x08" + secrets.token_bytes(500), complete=True).kind == FileKind.other


def test_text_is_served_in_the_charset_it_was_detected_in() -> None:
    assert detect(b"a,b\n", complete=True).content_type == "text/csv; charset=utf-8"
    assert detect("a\tb\nMálaga\t1\n".encode("latin-1"), complete=True).content_type == (
        "text/tab-separated-values; charset=iso-8859-1"
    )
    assert detect(codecs.BOM_UTF16_LE + "a,b\n".encode("utf-16-le"), complete=True).content_type == (
        "text/csv; charset=utf-16"
    )
