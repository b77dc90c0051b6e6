"""What the OpenAPI document says about errors: one body shape, and per route the statuses it answers.

Litestar documents only a handler's success status and 400; each handler lists the others with
``responses=errors(...)`` so that clients (and the schemathesis fuzz test) can rely on the document.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec


class ErrorBody(msgspec.Struct):
    """Every error answer. Some carry more fields that say more (``limit``, ``missing_chunks``, ``extra``…)."""

    status_code: int
    detail: str
    """What to change."""


WHY = {
    400: "The request cannot be read: the detail names the field",
    401: "No API key, or not a valid one: send 'Authorization: Bearer <key>'",
    403: "The key may not use this route (admin routes need an admin key)",
    404: "No such resource for this key's owner",
    408: "The request body stalled",
    409: "The resource is in a state that does not allow this",
    410: "The resource is gone (deleted or expired)",
    413: "The file is larger than the server accepts",
    415: "The bytes, or the body's media type, are not accepted",
    422: "A value is out of range or unusable: the detail names it",
    503: "A dependency (object store, Redis) is unavailable: retry after Retry-After seconds",
}


def errors(*codes: int, public: bool = False) -> dict[int, ResponseSpec]:
    """The error answers of a route: ``codes``, and 401 unless the route is ``public``."""
    wanted = sorted(set(codes) | (set() if public else {401}))
    return {code: _spec(code) for code in wanted}


def _spec(code: int) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorBody, description=WHY[code], generate_examples=False)


def response(data_container: Any, description: str) -> ResponseSpec:
    """A documented answer other than the handler's own success status (e.g. 207, 204)."""
    return ResponseSpec(data_container=data_container, description=description, generate_examples=False)
