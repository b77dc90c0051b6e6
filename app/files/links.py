"""Signed download links: a URL that serves one file's content without an Authorization header.

A browser cannot put a header on a plain link (``<a href download>``), so a key mints a link: the
key id, the file id and an expiry, signed with ``SLUICE_SECRET_KEY`` (HMAC-SHA256) like the stream
links of ``app.auth``, under its own purpose string so neither kind of token opens the other. The
key is read again on every download, so revoking it kills its links; the file is served through the
same checks as ``GET /content`` (owner, deleted, quarantined, scanning).
"""

from __future__ import annotations

import hmac
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import Provide
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.params import Parameter
from litestar.response import Stream
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Principal, link_signature, parse_link, sign_link
from app.errors import Conflict, Gone, Unavailable
from app.files.controller import content_response, provide_file_service
from app.files.service import FileService
from app.openapi import errors
from db.models import ApiKey, FileStatus
from db.settings import Settings

LINK_TTL_S = 3600
"""How long a download link works; long enough to start a large download, short enough to leak little."""


class FileLink(msgspec.Struct):
    """A same-origin URL that downloads the file without an Authorization header, until ``expires_at``."""

    url: str
    expires_at: datetime


def download_path(file_id: uuid.UUID) -> str:
    return f"/api/v1/files/{file_id}/download"


FILE_LINK = "sluice-file-link"


def link_token(secret: str, key_id: uuid.UUID, file_id: uuid.UUID, expires: int) -> str:
    """The ``link`` parameter: key id, expiry (Unix seconds) and their signature with the file id."""
    return sign_link(secret, FILE_LINK, key_id, str(file_id), expires)


async def link_principal(session: AsyncSession, settings: Settings, file_id: uuid.UUID, token: str | None) -> Principal:
    """Who minted the link, once its expiry, its signature and the key behind it all hold; else 401/403."""
    if not token:
        raise NotAuthorizedException("this download needs its link parameter; ask for a link with POST .../links")
    parsed = parse_link(token)
    if parsed is None:
        raise NotAuthorizedException("the download link is malformed; ask for a new link")
    key_id, expires, signature = parsed
    if expires < time.time():
        raise NotAuthorizedException("the download link has expired; ask for a new link")
    secret = settings.secret_key
    if not secret or not hmac.compare_digest(signature, link_signature(secret, FILE_LINK, key_id, str(file_id), expires)):
        raise PermissionDeniedException("the download link's signature is not valid for this file; ask for a new link")
    # Read after the signature, on every download: a revoked or expired key's links stop working.
    key = await session.scalar(select(ApiKey).where(ApiKey.id == key_id))
    if key is None or key.revoked_at is not None:
        raise NotAuthorizedException("the API key that made this download link was revoked; ask for a new link")
    if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
        raise NotAuthorizedException("the API key that made this download link has expired; ask for a new link")
    return Principal(key.owner_id, key.id, key.is_admin)


class FileLinkController(Controller):
    path = "/api/v1/files"
    tags = ["files"]
    dependencies = {"files": Provide(provide_file_service, sync_to_thread=False)}

    @post(
        "/{file_id:uuid}/links",
        operation_id="createFileLink",
        status_code=201,
        summary="A URL that downloads the file without an Authorization header (for a browser's link)",
        responses=errors(404, 409, 410, 503),
    )
    async def create_link(
        self, files: FileService, settings: Settings, principal: Principal, file_id: uuid.UUID
    ) -> FileLink:
        file = await files.get(principal, file_id)
        if file.status == FileStatus.deleted:
            raise Gone(f"file {file_id} was deleted")
        if file.status == FileStatus.quarantined:
            raise Conflict(f"file {file_id} is quarantined: the malware scanner found {file.scan_signature}; its content is never served")
        if not settings.secret_key:
            raise Unavailable("download links are off: this API process has no SLUICE_SECRET_KEY to sign them")
        expires = int(time.time()) + LINK_TTL_S
        token = link_token(settings.secret_key, principal.key_id, file_id, expires)
        return FileLink(url=f"{download_path(file_id)}?link={token}", expires_at=datetime.fromtimestamp(expires, UTC))

    @get(
        "/{file_id:uuid}/download",
        operation_id="downloadFileByLink",
        summary="Stream the stored bytes back, authorised by a signed link instead of a key",
        responses=errors(401, 403, 404, 409, 410, 503),
        opt={"exclude_from_auth": True},
    )
    async def download(
        self,
        files: FileService,
        db_session: AsyncSession,
        settings: Settings,
        file_id: uuid.UUID,
        link: Annotated[str | None, Parameter(description="the token of a link from POST /api/v1/files/{id}/links")] = None,
    ) -> Stream:
        owner = await link_principal(db_session, settings, file_id, link)
        return content_response(*await files.open_content(owner, file_id))
