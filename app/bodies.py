"""Request bodies: JSON is checked for nesting depth before it is decoded.

msgspec decodes recursively, so a body of thousands of ``[`` ends in a RecursionError (a 500)
before any schema is applied. Every JSON route decodes through ``BoundedRequest.json``, the
app's request class, so the bound holds for each of them and for any route added later.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import ClientException

MAX_JSON_DEPTH = 32
"""Far deeper than any body the API takes (``POST /jobs`` with a mapping is 4 levels)."""
_ALL_BUT_MARKS = bytes(b for b in range(256) if b not in b'"[]{}')
_ONE_BRACKET_KIND = bytes.maketrans(b"{}", b"[]")


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects in ``body`` nest more than ``limit`` deep (brackets in strings do not count).

    Only bytes methods, no Python loop over the body: a 10 MB body is checked in milliseconds.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _brackets_outside_strings(body).translate(_ONE_BRACKET_KIND)
    # Each pass drops every innermost pair, so exactly one nesting level.
    for _ in range(limit):
        brackets = brackets.replace(b"[]", b"")
        if not brackets:
            return False
    return True


def _brackets_outside_strings(body: bytes) -> bytes:
    # Escapes first (``\\`` before ``\"``, left to right, as a JSON reader pairs them), then
    # only quotes and brackets are left.
    marks = body.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _ALL_BUT_MARKS)
    # Strings without brackets are now ``""``; if no quote is left, that removed every string.
    plain = marks.replace(b'""', b"")
    if b'"' not in plain:
        return plain
    return b"".join(marks.split(b'"')[::2])


class BoundedRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        if json_depth_exceeds(await self.body()):
            raise ClientException(
                f"the JSON body nests arrays or objects more than {MAX_JSON_DEPTH} levels deep; send a flatter body"
            )
        return await super().json()
