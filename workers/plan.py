"""From the parser's columns and the job's mapping to the dataset's columns (select, rename, cast)."""

from __future__ import annotations

from db.sql import column_name_problem
from workers.contracts import ColumnMapping
from workers.parsers.types import Table
from workers.sink import DatasetColumn


class Malformed(Exception):
    """The file, or the options given for it, cannot be processed; the message says why to a person."""


def plan_columns(table: Table, mapping: ColumnMapping | None) -> list[DatasetColumn]:
    """The dataset's columns in file order; unselected ones are loaded as text and dropped at the end."""
    columns = list(table.columns)
    if mapping is None:
        return [DatasetColumn(c.name, c.pg_type) for c in columns]
    known = ", ".join(c.name for c in columns)

    def find(key: str, where: str) -> int:
        for i, column in enumerate(columns):
            if key in (column.name, column.header):
                return i
        raise Malformed(f"mapping.{where} names column {key!r}, which the file does not have; its columns are: {known}")

    keep = set(range(len(columns))) if mapping.select is None else {find(k, "select") for k in mapping.select}
    names = [c.name for c in columns]
    for key, new in mapping.rename.items():
        # The API refuses these too; a job queued before it did must not reach the sink with them.
        problem = column_name_problem(new)
        if problem is not None:
            raise Malformed(f"mapping.rename gives {key!r} a name that cannot be used: {problem}")
        names[find(key, "rename")] = new
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise Malformed(f"after mapping, column names repeat: {', '.join(duplicates)}; rename them apart")
    types = [c.pg_type for c in columns]
    for key, pg_type in mapping.cast.items():
        index = names.index(key) if key in names else find(key, "cast")
        types[index] = pg_type
    return [DatasetColumn(names[i], types[i], keep=i in keep) for i in range(len(columns))]
