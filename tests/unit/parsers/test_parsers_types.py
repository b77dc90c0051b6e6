"""Type inference, column naming and header detection."""

from __future__ import annotations

import pytest

from workers.parsers import infer_types, sanitize_columns
from workers.parsers.types import boolean_words, looks_like_header, value_type, widen


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "bigint"),
        ("-42", "bigint"),
        ("+7", "bigint"),
        ("9223372036854775807", "bigint"),
        ("-9223372036854775808", "bigint"),
        ("9223372036854775808", "numeric"),
        ("007", "text"),
        ("1_000", "text"),
        ("1,000", "text"),
        (" 1", "text"),
        ("١٢", "text"),
        ("1.50", "numeric"),
        ("-.5", "numeric"),
        ("1" * 39 + ".5", "text"),
        ("1e10", "double precision"),
        ("-2.5E-3", "double precision"),
        ("1e999", "text"),
        ("1e-400", "text"),
        ("NaN", "text"),
        ("true", "boolean"),
        ("F", "boolean"),
        ("Yes", "boolean"),
        ("on", "text"),
        ("2024-02-29", "date"),
        ("2023-02-29", "text"),
        ("0000-01-01", "text"),
        ("01/02/2024", "text"),
        ("2024-01-02T03:04:05Z", "timestamptz"),
        ("2024-01-02 03:04", "timestamp"),
        ("2014-09-02 13:40:36", "timestamp"),
        ("2014-09-02T13:40:36.5", "timestamp"),
        ("2014-09-02 13:40:36Z", "timestamptz"),
        ("2014-09-02 13:40:36-07", "timestamptz"),
        ("2024-01-02T03:04:05.123456+02:00", "timestamptz"),
        ("2024-01-02T03:04:05+0530", "timestamptz"),
        ("2024-01-02T24:00:00", "text"),
        ("2024-01-02T03:04:05.1234567", "text"),
        ("hello", "text"),
    ],
)
def test_value_type_accepts_only_what_postgresql_takes(value: str, expected: str) -> None:
    assert value_type(value) == expected


def test_infer_types_widens_and_ignores_empty_values() -> None:
    rows: list[list[str | None]] = [
        ["1", "1", "1", "2024-01-01", "t", None, "x", "1"],
        ["2", "1.5", "1e3", "2024-01-01 10:00", "no", "", "1", ""],
        ["", None, "2", None, "", None, "2", "yes"],
    ]
    assert infer_types(rows, 8) == [
        "bigint",
        "numeric",
        "double precision",
        "timestamp",
        "boolean",
        "text",
        "text",
        "text",
    ]


def test_timestamps_keep_what_the_file_says_about_zones() -> None:
    rows: list[list[str | None]] = [
        ["2024-01-01", "2024-01-01", "2024-01-01 10:00:00", "2024-01-01 10:00:00+02"],
        ["2024-01-02 10:00:00", "2024-01-02T10:00:00Z", "2024-01-02 11:00:00", "2024-01-02 11:00:00Z"],
    ]
    assert infer_types(rows, 4) == ["timestamp", "timestamptz", "timestamp", "timestamptz"]
    assert infer_types([["2024-01-01 10:00"], ["2024-01-01 10:00Z"]], 1) == ["text"]


@pytest.mark.parametrize(
    ("current", "value", "expected"),
    [
        ("bigint", "1.5", "numeric"),
        ("bigint", "99999999999999999999", "numeric"),
        ("bigint", "1e5", "double precision"),
        ("bigint", "other", "text"),
        ("numeric", "1e5", "double precision"),
        ("numeric", "n/a", "text"),
        ("double precision", "x", "text"),
        ("double precision", "7", "double precision"),
        ("boolean", "maybe", "text"),
        ("boolean", "1", "text"),
        ("date", "2024-01-01 10:00", "timestamp"),
        ("date", "2024-01-01 10:00+01", "timestamptz"),
        ("timestamp", "2024-01-01", "timestamp"),
        ("timestamp", "2024-01-01 10:00Z", "text"),
        ("timestamptz", "2024-01-01 10:00", "text"),
        ("date", "soon", "text"),
    ],
)
def test_widening_goes_to_the_narrowest_type_holding_both(current: str, value: str, expected: str) -> None:
    assert widen(current, value_type(value)) == expected


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (["yes", "no", "yes"], ("yes", "no")),
        ([None, "False", "True"], ("True", "False")),
        (["Yes"], ("Yes", "No")),
        (["NO", ""], ("YES", "NO")),
        (["t", "f"], ("t", "f")),
        (["F"], ("T", "F")),
        ([], ("true", "false")),
    ],
)
def test_boolean_words_are_the_files_own(values: list[str | None], words: tuple[str, str]) -> None:
    assert boolean_words(values) == words


def test_infer_types_short_rows_and_no_rows() -> None:
    assert infer_types([["1"], []], 2) == ["bigint", "text"]
    assert infer_types([], 2) == ["text", "text"]


def test_sanitize_columns() -> None:
    assert sanitize_columns(["  First Name ", "e-mail", "2021", "", "Prénom", "_row", "a", "A", "a_2", "#"]) == [
        "first_name",
        "e_mail",
        "c_2021",
        "col_4",
        "prénom",
        "row",
        "a",
        "a_3",
        "a_2",
        "col_10",
    ]


def test_sanitize_columns_truncates_to_63_bytes_and_keeps_names_unique() -> None:
    long = "é" * 40
    names = sanitize_columns([long, long, "x" * 100])
    assert all(len(n.encode()) <= 63 for n in names)
    assert len(set(names)) == 3
    assert names[1].endswith("_2")


def test_header_detection() -> None:
    assert looks_like_header(["id", "amount"], [["1", "2.5"], ["2", "3"]])
    assert not looks_like_header(["1", "2.5"], [["2", "3"]])
    assert not looks_like_header(["x", ""], [["y", "z"]])
    # All-text files cannot tell: a header is assumed.
    assert looks_like_header(["alice", "bob"], [["carol", "dave"]])
