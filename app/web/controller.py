"""``/``: the built web app (hashed assets cached for ever, index.html revalidated, client-side
routes answered with index.html); ``/api/v1/web/config``: what the uploader checks before sending."""

from __future__ import annotations

from typing import Any

from litestar import Controller, MediaType, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.response import File

from app.openapi import errors
from app.web.schemas import WebConfig
from app.web.service import (
    APP_CSP,
    ASSET_CACHE,
    NO_CACHE,
    SECURITY_HEADERS,
    WebApp,
    is_reserved,
    web_config,
)
from db.settings import Settings

NOT_FOUND = "no such route; the API is under /api/v1/ (see /schema/swagger)"


class WebController(Controller):
    include_in_schema = False
    opt = {"exclude_from_auth": True}

    @get(["/", "/{path:path}"], sync_to_thread=False)
    def page(self, request: Request[Any, Any, Any], settings: Settings, path: str = "/") -> Response[Any]:
        web = WebApp.from_settings(settings)
        path = "/" + path.lstrip("/")
        if path != "/" and (found := web.file(path)) is not None:
            cache = ASSET_CACHE if path.startswith("/assets/") else NO_CACHE
            return _file(found, cache)
        if path != "/" and (is_reserved(path) or "text/html" not in request.headers.get("accept", "")):
            raise NotFoundException(NOT_FOUND)
        index = web.index
        if index is None:
            if path != "/":
                raise NotFoundException(NOT_FOUND)
            return Response(
                web.hint(), media_type=MediaType.TEXT, headers={"Cache-Control": NO_CACHE, **SECURITY_HEADERS}
            )
        return _file(index, NO_CACHE)


def _file(path: Any, cache: str) -> File:
    return File(
        path,
        filename=path.name,
        content_disposition_type="inline",
        headers={"Cache-Control": cache, "Content-Security-Policy": APP_CSP, **SECURITY_HEADERS},
    )


class WebConfigController(Controller):
    path = "/api/v1/web"
    tags = ["web"]
    opt = {"exclude_from_auth": True}

    @get(
        "/config",
        operation_id="webConfig",
        summary="Upload limits and accepted types, for a browser uploader to check files before sending (no key needed)",
        responses=errors(public=True),
        sync_to_thread=False,
    )
    def config(self, settings: Settings) -> WebConfig:
        return web_config(settings)
