from __future__ import annotations

import pytest

from app.files.naming import sanitize_filename


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
        ("  spaced   out .csv ", "spaced out .csv"),
    ],
)
def test_sanitize(raw: str, clean: str) -> None:
    assert sanitize_filename(raw) == clean


def test_long_names_keep_their_extension_and_whole_characters() -> None:
    name = sanitize_filename("ü" * 200 + ".xlsx")
    assert name.endswith(".xlsx")
    assert len(name.encode()) <= 255
    name.encode().decode()
