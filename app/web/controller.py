"""``/``: the built web app (hashed assets cached for ever, index.html revalidated, client-side
routes answered with index.html); ``/api/v1/web/config``: what the uploader checks before sending."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Controller, MediaType, Request, Response, get, head
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
        if (found := _find(web, request, path)) is not None:
            return found
        return Response(web.hint(), media_type=MediaType.TEXT, headers={"Cache-Control": NO_CACHE, **SECURITY_HEADERS})

    @head(["/", "/{path:path}"], sync_to_thread=False)
    def page_head(self, request: Request[Any, Any, Any], settings: Settings, path: str = "/") -> File:
        """What GET sends, headers only (a link checker's or a proxy's probe)."""
        if (found := _find(WebApp.from_settings(settings), request, path)) is None:
            raise NotFoundException("the web app is not built here: GET / says how to build it")
        return found


def _find(web: WebApp, request: Request[Any, Any, Any], path: str) -> File | None:
    """The built file for ``path``, index.html for a page the browser routes itself, None for the
    root when there is no build; anything else is a 404."""
    path = "/" + path.lstrip("/")
    if path != "/" and (found := web.file(path)) is not None:
        return _file(found, ASSET_CACHE if path.startswith("/assets/") else NO_CACHE)
    if path != "/" and (is_reserved(path) or "text/html" not in request.headers.get("accept", "")):
        raise NotFoundException(NOT_FOUND)
    index = web.index
    if index is None:
        if path != "/":
            raise NotFoundException(NOT_FOUND)
        return None
    return _file(index, NO_CACHE)


def _file(path: Path, cache: str) -> File:
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
