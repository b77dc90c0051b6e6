"""The parser against the reference (Python's csv plus the documented rules), for every window size.

Random bytes go through ``open_csv`` with windows of 1, 2, 3, 7 and 1000 records; the COPY text is
read back as PostgreSQL reads it and, with the rejects, must be exactly what the reference says.
The same bytes through real PostgreSQL COPY and the sink: tests/integration/jobs/test_csv_copy.py.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, example, given, settings

from tests.support.csv_reference import Expected, csv_bytes, expected, read_copy
from workers.parsers import ParseError, Window, open_csv
from workers.parsers.types import comma_to_dot

WINDOW_SIZES = (1, 2, 3, 7, 1000)


def parsed(
    data: bytes, *, window_rows: int, delimiter: str, header: bool, decimal: str = "."
) -> tuple[Expected, list[Window]]:
    """What the parser made of ``data``, in the reference's terms, and its windows.

    Decimal commas are read as written (``"."``) unless asked: the reference is Python's csv.
    """
    out = Expected()
    try:
        table, iterator = open_csv(
            io.BytesIO(data), window_rows=window_rows, delimiter=delimiter, header=header, decimal=decimal
        )
        windows = list(iterator)
    except ParseError as error:
        out.error = str(error)
        return out, []
    out.width = len(table.columns) or None
    for window in windows:
        for values in read_copy(window.copy_data):
            row = values[0]
            assert row is not None
            out.stored.append((int(row), values[1:]))
        out.rejects.extend((r.row_number, r.reason, r.raw) for r in window.rejects)
    out.rejects.sort()
    return out, windows


def check(data: bytes, delimiter: str, header: bool) -> None:
    want = expected(data, delimiter=delimiter, header=header)
    for window_rows in WINDOW_SIZES:
        got, windows = parsed(data, window_rows=window_rows, delimiter=delimiter, header=header)
        context = f"window_rows={window_rows}"
        assert got.error == want.error, context
        if want.error is not None:
            continue
        assert got.stored == want.stored, context
        assert got.rejects == want.rejects, context
        if want.stored or want.rejects:
            assert got.width == want.width, context
        # Every record read is stored or rejected, window by window, in file order.
        assert sum(w.rows_read for w in windows) == len(want.stored) + len(want.rejects), context
        assert [w.index for w in windows] == list(range(len(windows))), context
        for window in windows:
            assert window.rows_read == len(read_copy(window.copy_data)) + len(window.rejects), context
        if windows:
            sample = [values[1:] for values in read_copy(windows[0].copy_data)]
            assert windows[0].rows == sample, context


@pytest.mark.parametrize(
    ("data", "delimiter", "header"),
    [
        # Found by the property below (and in the issue): each once depended on the window size.
        (b'"a', ",", False),
        (b'a,b\n1,"open\n', ",", True),
        (b'"\n"a,"\n\n', ",", False),
        (b"a,b\n1,2\n\"\n", ",", True),
        (b'a,b,c\n1,"",x"y\n', ",", True),
        (b'a,b,c\n1,"",x\n', ",", True),
        (b'a;b;c\n1;"";x\n2;;"y"\n', ";", True),
        (b'a,b,c\n1,"open,x\n2,3', ",", True),
        (b'"a', ",", True),
        (b'a,b\n"x"\n', ",", True),
        (b'a,b\n   \n1,2\n', ",", True),
        (b'a\n   \n""\n', ",", True),
        (b'a,b\r\n1,"x\r\ny"\r\n2,"\r"\r3,4', ",", True),
        (b'a,b\n1,"a"b\n2," "q""\n', ",", True),
        (b"a\tb\n1\t\"\"\n\"x\"\t\n", "\t", True),
    ],
)
def test_known_cases(data: bytes, delimiter: str, header: bool) -> None:
    check(data, delimiter, header)


def test_unclosed_quote_says_what_happened() -> None:
    got, _ = parsed(b'a,b,c\n1,2,3\n4,"five,6\n7,8,9\n', window_rows=1, delimiter=",", header=True)
    assert got.stored == [(2, ["1", "2", "3"])]
    assert got.rejects == [
        (3, "row 3: the quote opened on row 3 is never closed before the end of the file", '4,"five,6\n7,8,9')
    ]


def test_quoted_empty_is_the_empty_string_and_unquoted_empty_is_null() -> None:
    for window_rows in WINDOW_SIZES:
        got, _ = parsed(b'a,b,c\n1,"",x"y\n2,,""\n', window_rows=window_rows, delimiter=",", header=True)
        assert got.stored == [(2, ["1", "", 'x"y']), (3, ["2", None, ""])]


@settings(max_examples=2000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=csv_bytes(), header=...)
@example(case=(b'"\n"a,"\n\n', ","), header=False)
@example(case=(b"a,b\n1,2\n\"\n", ","), header=True)
def test_parser_matches_the_reference_for_every_window_size(case: tuple[bytes, str], header: bool) -> None:
    data, delimiter = case
    check(data, delimiter, header)


def check_decimal_comma(data: bytes, delimiter: str, header: bool) -> None:
    """With ``decimal: ","`` the parser stores what the reference reads, the values of its
    decimal-comma columns converted (``1,5`` → ``1.5``) and nothing else changed."""
    want = expected(data, delimiter=delimiter, header=header)
    for window_rows in WINDOW_SIZES:
        context = f"window_rows={window_rows}"
        got, _ = parsed(data, window_rows=window_rows, delimiter=delimiter, header=header, decimal=",")
        assert got.error == want.error, context
        if want.error is not None:
            continue
        table, _ = open_csv(io.BytesIO(data), window_rows=window_rows, delimiter=delimiter, header=header, decimal=",")
        flags = [c.decimal_comma for c in table.columns]
        converted = [
            (row, [comma_to_dot(v) if v is not None and i < len(flags) and flags[i] else v for i, v in enumerate(values)])
            for row, values in want.stored
        ]
        assert got.stored == converted, context
        assert got.rejects == want.rejects, context


@pytest.mark.parametrize(
    ("data", "delimiter", "header"),
    [
        (b'a;b;c\n1,5;"";x\n"2,5";;"y"\n-1.234,5;"";\n', ";", True),
        (b'a,b\n"1,5","x\ny"\n"1.234","a""b"\n7,\x00\n', ",", True),
        (b'a\tb\n1\t"2,5\n"\n', "\t", True),
    ],
)
def test_decimal_comma_known_cases(data: bytes, delimiter: str, header: bool) -> None:
    check_decimal_comma(data, delimiter, header)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=csv_bytes(), header=...)
def test_decimal_comma_parser_matches_the_converted_reference(case: tuple[bytes, str], header: bool) -> None:
    data, delimiter = case
    check_decimal_comma(data, delimiter, header)
