from __future__ import annotations

import codecs

import pytest

from app.files.detect import detect
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
        (b"PK\x03\x04....[Content_Types].xml....xl/workbook.xml", FileKind.xlsx, None),
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
