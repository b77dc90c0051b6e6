"""The one place where names (schema, table, column) become SQL text.

Every identifier that reaches a statement goes through :func:`quote_ident`; values never do (they
are bound parameters). A name PostgreSQL could not store as written is refused here rather than
silently truncated or altered, so what a caller asked for is exactly what the database sees.
"""

from __future__ import annotations

import re

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
