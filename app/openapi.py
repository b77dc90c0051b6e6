"""What the OpenAPI document says beyond what Litestar sees: one error body shape and per route the
statuses it answers, the bearer key each route needs, and the raw bodies of the upload routes.

Litestar documents only a handler's success status and 400; each handler lists the others with
``responses=errors(...)`` so that clients (and the schemathesis fuzz test) can rely on the document.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.routes import HTTPRoute


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


BEARER = "bearer"
RAW_BODIES = {
    "uploadFile": "The file's bytes as they are (`curl -T file`), streamed to the object store; any Content-Type.",
    "putUploadChunk": "The chunk's bytes: exactly the session's chunk_size (the last chunk: what is left of the file).",
}
"""Routes that read their body as a raw stream, which Litestar cannot see from the handler."""


def openapi_config(render_plugins: Sequence[OpenAPIRenderPlugin], router: Router) -> OpenAPIConfig:
    """The document's settings: a bearer scheme for the API key, served on ``router``."""
    return OpenAPIConfig(
        title="Sluice",
        version="1.0.0",
        path=router.path,
        render_plugins=render_plugins,
        openapi_router=router,
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="An API key (`sluice keys create NAME`), sent as `Authorization: Bearer <key>`",
                )
            }
        ),
    )


def document_app(app: Litestar) -> None:
    """Finish the document once every route is known: the bearer scheme on each route that needs a
    key (not on the ones excluded from authentication), and the raw upload bodies."""
    public = {
        (route.path_format, method.lower())
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        if handler.opt.get("exclude_from_auth")
        for method in handler.http_methods
    }
    for path, item in (app.openapi_schema.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch", "head", "options"):
            operation: Operation | None = getattr(item, method, None)
            if operation is None:
                continue
            if (path, method) not in public:
                operation.security = [{BEARER: []}]
            if operation.operation_id in RAW_BODIES:
                operation.request_body = RequestBody(
                    description=RAW_BODIES[operation.operation_id],
                    required=True,
                    content={"application/octet-stream": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY))},
                )
