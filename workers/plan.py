"""From the parser's columns and the job's mapping to the dataset's columns (select, rename, cast)."""

from __future__ import annotations

from collections.abc import Sequence

from db.sql import column_name_problem
from workers.contracts import ColumnMapping
from workers.parsers.types import BOOLEAN, TEXT, YES_NO, Table, boolean_words
from workers.sink import DatasetColumn


MAX_TABLE_COLUMNS = 1600
"""PostgreSQL's limit on the columns of one table; a dataset also has ``_row``."""


class Malformed(Exception):
    """The file, or the options given for it, cannot be processed; the message says why to a person."""


def plan_columns(
    table: Table,
    mapping: ColumnMapping | None,
    sample: Sequence[Sequence[str | None]] = (),
    *,
    strict: bool = False,
    yes_no_boolean: bool = True,
) -> list[DatasetColumn]:
    """The dataset's columns in file order; unselected ones are loaded as text and dropped at the end.

    ``sample`` is the inference sample (window 0's values): it tells how boolean columns spell
    true and false, and whether they say yes/no. Inferred types may widen while loading, unless
    ``strict``; cast types are pinned.
    """
    columns = list(table.columns)
    if len(columns) >= MAX_TABLE_COLUMNS:
        # Every column of the file is staged (unselected ones too), so only a narrower file helps.
        raise Malformed(
            f"the file has {len(columns):,} columns; PostgreSQL allows {MAX_TABLE_COLUMNS:,} in a table, one of "
            f"them Sluice's _row: split the file into files of at most {MAX_TABLE_COLUMNS - 1:,} columns"
        )
    types: list[str] = []
    words: list[tuple[str, str] | None] = []
    for i, column in enumerate(columns):
        values = [row[i] if i < len(row) else None for row in sample] if column.pg_type == BOOLEAN else []
        if not yes_no_boolean and any(v and v.lower() in YES_NO for v in values):
            types.append(TEXT)
            words.append(None)
        else:
            types.append(column.pg_type)
            words.append(boolean_words(values) if column.pg_type == BOOLEAN else None)
    if mapping is None:
        return [DatasetColumn(c.name, types[i], pinned=strict, words=words[i]) for i, c in enumerate(columns)]
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
    pinned = [strict] * len(columns)
    for key, pg_type in mapping.cast.items():
        index = names.index(key) if key in names else find(key, "cast")
        types[index] = pg_type
        pinned[index] = True
    return [
        DatasetColumn(names[i], types[i], keep=i in keep, pinned=pinned[i], words=words[i]) for i in range(len(columns))
    ]
