"""API shapes of datasets: the tables processed files become."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec


class Column(msgspec.Struct):
    name: str
    type: str


class RowsPage(msgspec.Struct):
    """Rows in file order; ``row_numbers[i]`` is the line-of-data number of ``rows[i]`` in the file."""

    file_id: uuid.UUID
    job_id: uuid.UUID | None
    """The job that built the table; None once that job was purged."""
    table: str
    columns: list[Column]
    rows: list[list[Any]]
    row_numbers: list[int]
    total: int
    offset: int
    limit: int
