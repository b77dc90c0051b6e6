"""Finds the built web app's files and what the browser uploader is told about the server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.web.schemas import WebConfig
from db.settings import Settings

RESERVED = ("/api", "/schema", "/metrics", "/health", "/ready", "/assets")
"""Path prefixes that never fall back to the app's index.html: an unknown one is a real 404."""

ASSET_CACHE = "public, max-age=31536000, immutable"
"""Files under ``/assets/`` carry a content hash in their name, so a new build never reuses a URL."""
NO_CACHE = "no-cache"

APP_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
"""The web app's pages: its own scripts, styles and API only. ``blob:`` images are the uploader's
file thumbnails, made in the page."""
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
"""Swagger UI: scripts and styles served by Sluice; it writes style attributes into the page it renders."""
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

BUILD_HINT = """Sluice's API is running, but the web app is not built here.

Build it once (Node.js 20 and npm):

    cd web && npm ci && npm run build

and reload this page (ops/stack and ops/test build it for you when web/ changes). The server looks
for the build in SLUICE_WEB_DIST ({dist}).

The API is at /api/v1/ and its documentation at /schema/swagger.
"""

EXTENSIONS = {
    "csv": (".csv", "text/csv"),
    "tsv": (".tsv", ".tab", "text/tab-separated-values"),
}
"""File names and media types a browser gives the accepted kinds. Text may also come as ``.txt``
or ``text/plain`` and gzip-compressed (``.gz``)."""
TEXT = (".txt", "text/plain", ".gz", "application/gzip", "application/x-gzip")
XLSX = (".xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


@dataclass(frozen=True, slots=True)
class WebApp:
    """The build folder (``SLUICE_WEB_DIST``). Looked at on every request, so a build made while
    the API runs is served at once."""

    dist: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> WebApp:
        return cls(Path(settings.web_dist).resolve())

    @property
    def index(self) -> Path | None:
        index = self.dist / "index.html"
        return index if index.is_file() else None

    def file(self, path: str) -> Path | None:
        """The built file at URL ``path``, or None; never a file outside the build folder."""
        parts = [part for part in path.split("/") if part]
        if not parts or any(part.startswith(".") or "\\" in part or "\0" in part for part in parts):
            return None
        candidate = self.dist.joinpath(*parts)
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not resolved.is_file() or not resolved.is_relative_to(self.dist):
            return None
        return resolved

    def hint(self) -> str:
        return BUILD_HINT.format(dist=self.dist)


def is_reserved(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in RESERVED)


def web_config(settings: Settings) -> WebConfig:
    accepted: list[str] = []
    kinds = set(settings.allowed_kinds)
    if "other" not in kinds:
        for kind in ("csv", "tsv"):
            if kind in kinds:
                accepted += EXTENSIONS[kind]
        if kinds & {"csv", "tsv"}:
            accepted += TEXT
        if "xlsx" in kinds:
            accepted += XLSX
    return WebConfig(
        max_upload_bytes=settings.max_file_size,
        accepted_types=accepted,
        part_size=settings.part_size,
        tus_endpoint="/api/v1/tus/",
    )
