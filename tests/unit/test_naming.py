from __future__ import annotations

import unicodedata

import pytest

from app.files.naming import INVISIBLE_CATEGORIES, original_name, sanitize_filename, strip_invisible


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("report.csv", "report.csv"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\data.tsv", "data.tsv"),
        ("tab\tand\nnewline.csv", "tabandnewline.csv"),
        ("...", "upload"),
        ("", "upload"),
        ("a..b.csv", "a.b.csv"),
        ("a...b.csv", "a.b.csv"),
        ("  spaced   out .csv ", "spaced out .csv"),
        ("nul\x00byte.csv", "nulbyte.csv"),
        ("c1\x85\x9bcontrols.csv", "c1controls.csv"),
        ("invoice\u202egpj.csv", "invoicegpj.csv"),
        ("zero\u200bwidth\ufeff\u2066.csv", "zerowidth.csv"),
        ("private\ue000use.csv", "privateuse.csv"),
        ("lone\ud800surrogate.csv", "lonesurrogate.csv"),
        ("\x00\u202e\u200b", "upload"),
        ("cafe\u0301.csv", "caf\u00e9.csv"),
        ("日本語.xlsx", "日本語.xlsx"),
    ],
)
def test_sanitize(raw: str, clean: str) -> None:
    assert sanitize_filename(raw) == clean


def test_no_invisible_character_survives_any_code_point() -> None:
    every = "".join(chr(c) for c in range(0x110000))
    for cleaned in (strip_invisible(every), sanitize_filename(every), original_name(every)):
        assert not {unicodedata.category(ch) for ch in cleaned} & INVISIBLE_CATEGORIES
        cleaned.encode()


def test_original_name_keeps_the_path_but_not_what_postgresql_or_a_reader_cannot_take() -> None:
    assert original_name("dir/sub\\invoice\u202egpj.csv") == "dir/sub\\invoicegpj.csv"
    assert original_name("a\x00b.csv") == "ab.csv"
    assert original_name("\u202e") == "upload"


def test_long_names_keep_their_extension_and_whole_characters() -> None:
    name = sanitize_filename("ü" * 200 + ".xlsx")
    assert name.endswith(".xlsx")
    assert len(name.encode()) <= 255
    name.encode().decode()
