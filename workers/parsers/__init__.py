"""File parsers: CSV/TSV and XLSX byte sources in, windows of COPY-ready rows out.

Both parsers return ``(Table, Iterator[Window])``; see ``workers.parsers.types`` for the
contract (row numbering, ``copy_data`` layout) and each module for its limits.
"""

from workers.parsers.text import open_csv
from workers.parsers.types import (
    Column,
    ParseError,
    Reject,
    Table,
    Window,
    infer_types,
    sanitize_columns,
)
from workers.parsers.xlsx import XlsxLimits, XlsxRefused, open_xlsx, prescan_xlsx

__all__ = [
    "Column",
    "ParseError",
    "Reject",
    "Table",
    "Window",
    "XlsxLimits",
    "XlsxRefused",
    "infer_types",
    "open_csv",
    "open_xlsx",
    "prescan_xlsx",
    "sanitize_columns",
]
