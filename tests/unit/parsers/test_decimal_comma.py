"""Decimal commas: which columns hold them (the option, or detection when unambiguous), and how the
parser gives their values to COPY (``1.234,50`` → ``1234.50``) while every other value stays as written."""

from __future__ import annotations

import io

import pytest

from tests.support.csv_reference import read_copy
from workers.parsers import open_csv
from workers.parsers.types import comma_to_dot, decimal_comma_columns


def load(text: str, *, window_rows: int = 1000, **options: object) -> tuple[dict[str, tuple[str, bool]], list[list[str | None]]]:
    """Column name → (type, decimal comma), and the values COPY gets (row number first)."""
    table, windows = open_csv(io.BytesIO(text.encode()), window_rows=window_rows, **options)  # type: ignore[arg-type]
    copied = [values for window in windows for values in read_copy(window.copy_data)]
    return {c.name: (c.pg_type, c.decimal_comma) for c in table.columns}, copied


@pytest.mark.parametrize(
    ("value", "converted"),
    [
        ("1,50", "1.50"),
        ("-3,25", "-3.25"),
        ("1.234,50", "1234.50"),
        ("12.345.678,9", "12345678.9"),
        ("1.234", "1234"),
        ("0,5", "0.5"),
        ("12", "12"),
        ("1.5", "1.5"),
        ("1,2,3", "1,2,3"),
        ("1.23,4", "1.23,4"),
        ("12.34.567,8", "12.34.567,8"),
        ("n/a", "n/a"),
        ("", ""),
        ("\u0661,\u0662", "\u0661,\u0662"),
    ],
)
def test_comma_to_dot_converts_only_decimal_comma_numbers(value: str, converted: str) -> None:
    assert comma_to_dot(value) == converted


def test_detection_needs_every_value_of_a_column_to_be_a_decimal_comma_number() -> None:
    rows: list[list[str | None]] = [
        ["1,50", "1,50", "a", None, "7"],
        ["-3,25", "x", "b", None, "8"],
        ["1.234,50", None, "c", None, "9"],
        [None, "2,5", "1,5", None, "10"],
    ]
    assert decimal_comma_columns(rows, 5, decimal=None, delimiter=";") == [True, False, False, False, False]
    assert decimal_comma_columns(rows, 5, decimal=None, delimiter="\t") == [True, False, False, False, False]


def test_detection_never_happens_with_a_comma_delimiter_or_a_dot_decimal_in_the_sample() -> None:
    rows: list[list[str | None]] = [["1,50", "3"], ["2,25", "4"]]
    assert decimal_comma_columns(rows, 2, decimal=None, delimiter=",") == [False, False]
    assert decimal_comma_columns([*rows, ["3,75", "1.5"]], 2, decimal=None, delimiter=";") == [False, False]
    assert decimal_comma_columns([*rows, ["3,75", "1.234"]], 2, decimal=None, delimiter=";") == [False, False]


def test_the_option_decides_instead_of_detection() -> None:
    rows: list[list[str | None]] = [["1,50", "3", "1.5", "a", None], ["1.234", "4", "2,5", "b", None]]
    assert decimal_comma_columns(rows, 5, decimal=".", delimiter=";") == [False] * 5
    # With "," a column of numbers read with a decimal comma is one (integers too: a later 1,50 is a number).
    assert decimal_comma_columns(rows, 5, decimal=",", delimiter=",") == [True, True, False, False, False]


def test_a_semicolon_file_with_decimal_commas_is_detected_and_converted() -> None:
    text = "name;price;qty\na;1,50;3\nb;-3,25;4\nc;1.234,50;5\nd;;6\ne;\"0,5\";7\n"
    columns, copied = load(text)
    assert columns == {"name": ("text", False), "price": ("numeric", True), "qty": ("bigint", False)}
    assert copied == [
        ["2", "a", "1.50", "3"],
        ["3", "b", "-3.25", "4"],
        ["4", "c", "1234.50", "5"],
        ["5", "d", None, "6"],
        ["6", "e", "0.5", "7"],
    ]


LATE = "id\tprice\tnote\n1\t1,50\tx,y\n2\t2,25\t\n3\tn/a\t\"\"\n4\t1.234\tz\n5\t1.234,5\tw\n"


@pytest.mark.parametrize("window_rows", [1, 2])
def test_later_windows_are_converted_and_other_values_stay_as_written(window_rows: int) -> None:
    # Only window 0 is the sample: with one or two rows a window it holds decimal commas only.
    columns, copied = load(LATE, window_rows=window_rows)
    assert columns["price"] == ("numeric", True)
    assert columns["note"][1] is False
    assert copied == [
        ["2", "1", "1.50", "x,y"],
        ["3", "2", "2.25", None],
        ["4", "3", "n/a", ""],
        ["5", "4", "1234", "z"],
        ["6", "5", "1234.5", "w"],
    ]


def test_a_sample_holding_other_values_detects_nothing() -> None:
    columns, copied = load(LATE, window_rows=1000)
    assert columns["price"] == ("text", False)
    assert [r[2] for r in copied] == ["1,50", "2,25", "n/a", "1.234", "1.234,5"]


def test_nothing_is_guessed_in_a_comma_separated_file() -> None:
    text = 'name,price\na,"1,50"\nb,"2,25"\n'
    columns, copied = load(text)
    assert columns == {"name": ("text", False), "price": ("text", False)}
    assert copied == [["2", "a", "1,50"], ["3", "b", "2,25"]]


def test_the_option_converts_in_a_comma_separated_file_too() -> None:
    text = 'name,price,qty\na,"1,50",3\nb,"2,25",4\nc,7,"5,5"\n'
    columns, copied = load(text, window_rows=2, decimal=",")
    assert columns == {"name": ("text", False), "price": ("numeric", True), "qty": ("bigint", True)}
    assert copied == [["2", "a", "1.50", "3"], ["3", "b", "2.25", "4"], ["4", "c", "7", "5.5"]]


def test_the_dot_option_keeps_decimal_commas_text() -> None:
    columns, copied = load("name;price\na;1,50\nb;2,25\n", decimal=".")
    assert columns["price"] == ("text", False)
    assert copied == [["2", "a", "1,50"], ["3", "b", "2,25"]]


def test_a_sample_with_a_dot_decimal_keeps_every_column_as_written() -> None:
    columns, copied = load("price;ratio\n1,50;0.5\n2,25;1.5\n")
    assert columns == {"price": ("text", False), "ratio": ("numeric", False)}
    assert copied == [["2", "1,50", "0.5"], ["3", "2,25", "1.5"]]


def test_selected_columns_are_converted_by_their_position_in_the_table() -> None:
    columns, copied = load("a;b;c\nx;1,5;3\ny;2,5;4\n", select=[1, 0])
    assert columns == {"b": ("numeric", True), "a": ("text", False)}
    assert copied == [["2", "1.5", "x"], ["3", "2.5", "y"]]


def test_without_decimal_columns_comma_files_keep_the_pass_through_path() -> None:
    text = "id,amount\n" + "".join(f"{i},{i}.5\n" for i in range(1, 21))
    table, windows = open_csv(io.BytesIO(text.encode()), window_rows=5)
    out = list(windows)
    assert not any(c.decimal_comma for c in table.columns)
    # Pass-through windows carry the file's own lines behind the row number.
    assert out[1].copy_data == "".join(f"{i + 1},{i},{i}.5\n" for i in range(6, 11)).encode()


def test_an_unknown_decimal_is_refused() -> None:
    with pytest.raises(ValueError, match="decimal"):
        open_csv(io.BytesIO(b"a;b\n1;2\n"), window_rows=10, decimal=";")
