"""Swagger UI at ``/schema/swagger`` (and ``/schema``) from files Sluice serves itself, so the docs
work on a machine without internet: the UI comes from the pinned ``openapi-ui-bundles`` package,
never from a CDN, and it reads ``/schema/openapi.json``."""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, get
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import OpenAPIRenderPlugin, YamlRenderPlugin
from litestar.response import File
from openapi_ui_bundles import swagger_ui

from app.web.service import DOCS_CSP, SECURITY_HEADERS

DOCS_PATH = "/schema"
ASSETS = f"{DOCS_PATH}/swagger-ui"
ASSET_FILES = frozenset(
    {"swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css", "index.css", "favicon-32x32.png"}
)

INIT_JS = b"""window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/schema/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "BaseLayout",
  });
});
"""
"""In a file of its own rather than inline, so the page's CSP allows no inline script."""


class OfflineSwagger(OpenAPIRenderPlugin):
    def __init__(self) -> None:
        super().__init__(path="/swagger", favicon="", style="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = str(openapi_schema.get("info", {}).get("title", "API"))
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} API</title>
<link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png">
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
<link rel="stylesheet" href="{ASSETS}/index.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="{ASSETS}/swagger-ui-standalone-preset.js"></script>
<script src="{ASSETS}/init.js"></script>
</body>
</html>
""".encode()

    def receive_router(self, router: Router) -> None:
        router.register(swagger_asset)
        router.register(swagger_init)


@get("/swagger-ui/{name:str}", sync_to_thread=False, include_in_schema=False)
def swagger_asset(name: str) -> File:
    if name not in ASSET_FILES:
        raise NotFoundException(f"no Swagger UI file {name!r}")
    return File(
        swagger_ui.static_path / name,
        filename=name,
        content_disposition_type="inline",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@get("/swagger-ui/init.js", media_type="text/javascript", sync_to_thread=False, include_in_schema=False)
def swagger_init() -> bytes:
    return INIT_JS


def docs_router() -> Router:
    """The router the OpenAPI routes go on: every answer carries the docs' CSP."""
    return Router(
        DOCS_PATH,
        route_handlers=[],
        include_in_schema=False,
        response_headers={"Content-Security-Policy": DOCS_CSP, **SECURITY_HEADERS},
    )


def render_plugins() -> list[OpenAPIRenderPlugin]:
    """Swagger UI (also at ``/schema``), and the document as YAML; JSON is always there."""
    return [OfflineSwagger(), YamlRenderPlugin()]
