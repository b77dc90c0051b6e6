"""The one place where names (schema, table, column) become SQL text.

Every identifier that reaches a statement goes through :func:`quote_ident`; values never do (they
are bound parameters). A name PostgreSQL could not store as written is refused here rather than
silently truncated or altered, so what a caller asked for is exactly what the database sees.
"""

from __future__ import annotations

import re
import unicodedata

MAX_IDENTIFIER_BYTES = 63
"""PostgreSQL's NAMEDATALEN - 1: longer names are truncated by the server, so they are refused."""

_PLAIN = re.compile(r"[a-z_][a-z0-9_]*\Z")


class BadIdentifier(ValueError):
    """A name that cannot be used as a PostgreSQL identifier."""


def quote_ident(name: str) -> str:
    """``name`` as a double-quoted identifier, any ``"`` doubled; refuses NUL, empty and over-long names."""
    if not name or "\x00" in name:
        raise BadIdentifier(f"{name!r} is not a usable identifier: it is empty or holds a NUL character")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise BadIdentifier(f"{name!r} is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES} bytes")
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    """``schema.table``, both quoted."""
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def is_plain_identifier(name: str) -> bool:
    """True for lower-case ASCII names that need no quoting (what settings such as the schema must be)."""
    return bool(_PLAIN.match(name)) and len(name) <= MAX_IDENTIFIER_BYTES


_NOT_WORD = re.compile(r"[\W_]+")


def truncate_name(name: str, limit: int = MAX_IDENTIFIER_BYTES) -> str:
    """``name`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    encoded = name.encode("utf-8")
    if len(encoded) <= limit:
        return name
    return encoded[:limit].decode("utf-8", "ignore")


def column_name(text: str) -> str:
    """What a header text becomes as a column name: lower snake_case, at most 63 bytes; ``""`` if nothing is left.

    Runs of characters other than letters and digits become one ``_`` (trimmed at both ends, so
    no name starts with ``_`` like the sink's own ``_row``); a leading digit gets a ``c_`` prefix.
    """
    name = _NOT_WORD.sub("_", unicodedata.normalize("NFC", text).strip().lower()).strip("_")
    if name and name[0].isdigit():
        name = f"c_{name}"
    return truncate_name(name)


def column_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a column name as given (it is not what :func:`column_name` makes of it), else None."""
    if name and column_name(name) == name:
        return None
    suggestion = column_name(name.replace("\x00", ""))
    hint = f"; {suggestion!r} would do" if suggestion else ""
    return (
        f"{name!r} is not a column name: use lower-case letters, digits and single _ between them,"
        f" not starting with a digit or _, at most {MAX_IDENTIFIER_BYTES} bytes{hint}"
    )
