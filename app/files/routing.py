"""Keeps a whole filename in one path segment for ``PUT /api/v1/files/{filename}``.

ASGI servers decode ``%2F`` into ``/`` before routing, so ``..%2Fetc%2Fpasswd`` would no longer
be one segment and would answer 404. For that route the segment is rebuilt from ``raw_path``,
fully percent-encoded; the handler decodes it once and sanitises the name.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from litestar.types import ASGIApp, Receive, Scope, Send

UPLOAD_PREFIX = "/api/v1/files/"


def filename_segment_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "PUT" and scope["path"].startswith(UPLOAD_PREFIX):
            raw = scope.get("raw_path") or scope["path"].encode()
            remainder = raw.decode("latin-1")[len(UPLOAD_PREFIX) :].split("?", 1)[0]
            if remainder:
                scope = {**scope, "path": UPLOAD_PREFIX + quote(unquote(remainder), safe="")}  # type: ignore[misc]
        await app(scope, receive, send)

    return middleware


def decode_filename(segment: str) -> str:
    return unquote(segment)
