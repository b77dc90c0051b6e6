"""HTTP routes of tus 1.0 (https://tus.io/protocols/resumable-upload): headers in, headers out.

Every answer but OPTIONS carries ``Tus-Resumable``, errors included (the handlers below wrap the
app's own). ``X-HTTP-Method-Override`` on a POST to an upload is served as that method, for clients
behind proxies that only pass GET and POST.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from email.utils import format_datetime
from typing import Any

from litestar import Controller, MediaType, Request, Response, delete, head, patch, post, route
from litestar.datastructures import State
from litestar.di import Provide
from litestar.enums import HttpMethod
from litestar.exceptions import HTTPException, ValidationException
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Principal
from app.budget import upload_memory
from app.errors import EXCEPTION_HANDLERS, ServiceError, UnsupportedType
from app.jobs.service import JobService
from app.tus.schemas import CHECKSUM_ALGORITHMS, EXTENSIONS, OFFSET_TYPE, TUS_VERSION, Checksum, Creation, TusState
from app.tus.openapi import (
    AnnounceOperation,
    CreateOperation,
    HeadOperation,
    OverrideOperation,
    PatchOperation,
    TerminateOperation,
)
from app.tus.service import BASE, TusService, tus_overlap
from db.settings import Settings
from db.storage import ObjectStore, StorageError

_KEY = re.compile(r"[^\s,]+\Z")
_DIGITS = re.compile(r"[0-9]{1,19}\Z")


class PreconditionFailed(ServiceError):
    status_code = 412


def provide_tus_service(db_session: AsyncSession, store: ObjectStore, settings: Settings, state: State) -> TusService:
    resources = state.resources
    jobs = JobService(db_session, settings, resources.broker, resources.redis)
    return TusService(
        db_session, store, settings, resources.redis, jobs, upload_memory(state, settings), tus_overlap(state, settings)
    )


def _announce_id(handler: Any, method: Any, components: list[Any]) -> str:
    """OPTIONS serves two paths; each needs an operation id of its own."""
    return "tusOptionsUpload" if any(not isinstance(c, str) for c in components) else "tusOptions"


def _with_tus_headers(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    handler = next(EXCEPTION_HANDLERS[k] for k in type(exc).__mro__ if k in EXCEPTION_HANDLERS)
    response = handler(request, exc)  # type: ignore[operator]
    response.headers["Tus-Resumable"] = TUS_VERSION
    if response.status_code == 412:
        response.headers["Tus-Version"] = TUS_VERSION
    return response  # type: ignore[no-any-return]


TUS_ERRORS = {k: _with_tus_headers for k in (ServiceError, StorageError, ValidationException, HTTPException, Exception)}


def _check_version(request: Request[Any, Any, Any]) -> None:
    sent = request.headers.get("tus-resumable")
    if sent != TUS_VERSION:
        raise PreconditionFailed(
            f"send Tus-Resumable: {TUS_VERSION}; this server speaks tus {TUS_VERSION}"
            + (f", not {sent}" if sent else "")
        )


def _number(request: Request[Any, Any, Any], name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    if not _DIGITS.match(value.strip()):
        raise ServiceError(f"{name} must be a whole number of bytes, not {value!r}")
    return int(value)


def _metadata(raw: str | None) -> dict[str, bytes]:
    if raw is None or not raw.strip():
        return {}
    pairs: dict[str, bytes] = {}
    for item in raw.split(","):
        key, _, value = item.strip().partition(" ")
        if not _KEY.match(key) or key in pairs:
            raise ServiceError(
                "Upload-Metadata must be comma-separated 'key base64value' pairs with distinct keys (no spaces or commas in keys)"
            )
        try:
            pairs[key] = base64.b64decode(value.strip(), validate=True)
        except binascii.Error:
            raise ServiceError(f"Upload-Metadata value of {key!r} is not base64") from None
    return pairs


def _checksum(raw: str | None) -> Checksum | None:
    if raw is None:
        return None
    algorithm, _, value = raw.strip().partition(" ")
    if algorithm.lower() not in CHECKSUM_ALGORITHMS:
        raise ServiceError(
            f"Upload-Checksum algorithm {algorithm!r} is not supported; use one of {', '.join(CHECKSUM_ALGORITHMS)}"
        )
    try:
        return Checksum(algorithm.lower(), base64.b64decode(value.strip(), validate=True))
    except binascii.Error:
        raise ServiceError("Upload-Checksum must be '<algorithm> <base64 digest>'") from None


def _upload_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text.rstrip("/").rsplit("/", 1)[-1])
    except ValueError:
        raise ServiceError(f"Upload-Concat names {text!r}, which is not an upload URL of this server") from None


def _creation(request: Request[Any, Any, Any]) -> Creation:
    length = _number(request, "upload-length")
    deferred = request.headers.get("upload-defer-length")
    concat = request.headers.get("upload-concat")
    raw_metadata = request.headers.get("upload-metadata")
    metadata = _metadata(raw_metadata)
    if deferred is not None and deferred.strip() != "1":
        raise ServiceError("Upload-Defer-Length must be 1")
    if concat is not None and concat.startswith("final;"):
        if length is not None:
            raise ServiceError("a final upload takes no Upload-Length: its length is the partial uploads' sum")
        ids = [_upload_id(url) for url in concat[len("final;") :].split()]
        return Creation(None, metadata, raw_metadata, final_of=ids)
    if concat is not None and concat.strip() != "partial":
        raise ServiceError("Upload-Concat must be 'partial' or 'final;<upload URLs>'")
    if (length is None) == (deferred is None):
        raise ServiceError("send either Upload-Length (the file's bytes) or Upload-Defer-Length: 1")
    return Creation(length, metadata, raw_metadata, partial=concat is not None)


def _headers(state: TusState) -> dict[str, str]:
    headers = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
    if state.offset is not None:
        headers["Upload-Offset"] = str(state.offset)
    if state.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(state.length)
    if state.metadata:
        headers["Upload-Metadata"] = state.metadata
    if state.expires is not None:
        headers["Upload-Expires"] = format_datetime(state.expires, usegmt=True)
    if state.concat is not None:
        headers["Upload-Concat"] = state.concat
    if state.file_id is not None:
        headers["Sluice-File-Id"] = str(state.file_id)
    if state.job_id is not None:
        headers["Sluice-Job-Id"] = str(state.job_id)
    return headers


def _empty(status: int, headers: dict[str, str]) -> Response[None]:
    return Response(None, status_code=status, headers=headers, media_type=MediaType.TEXT)


async def _patch(request: Request[Any, Any, Any], tus: TusService, principal: Principal, upload_id: uuid.UUID) -> Response[None]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != OFFSET_TYPE:
        raise UnsupportedType(f"a PATCH body must be sent as Content-Type: {OFFSET_TYPE}")
    offset = _number(request, "upload-offset")
    if offset is None:
        raise ServiceError("send Upload-Offset: the offset HEAD answered")
    state = await tus.patch(
        principal,
        upload_id,
        offset,
        request.stream(),
        length=_number(request, "upload-length"),
        checksum=_checksum(request.headers.get("upload-checksum")),
    )
    headers = _headers(state)
    del headers["Cache-Control"]
    return _empty(204, headers)


async def _head(tus: TusService, principal: Principal, upload_id: uuid.UUID) -> Response[None]:
    headers = _headers(await tus.state(principal, upload_id))
    headers.pop("Sluice-Job-Id", None)
    return _empty(200, headers)


class TusController(Controller):
    path = BASE
    tags = ["tus"]
    dependencies = {"tus": Provide(provide_tus_service, sync_to_thread=False)}
    exception_handlers = TUS_ERRORS  # type: ignore[assignment]

    # Litestar registers a controller's handlers in name order and adds its own OPTIONS handler to a
    # path that has none yet: this one's name must sort before every other handler's.
    @route(
        ["/", "/{upload_id:uuid}"],
        http_method=[HttpMethod.OPTIONS],
        operation_id=_announce_id,
        operation_class=AnnounceOperation,
        summary="tus server capabilities (no key needed: browsers send it as a CORS preflight)",
        opt={"exclude_from_auth": True},
    )
    async def announce(self, settings: Settings) -> Response[None]:
        return _empty(
            204,
            {
                "Tus-Version": TUS_VERSION,
                "Tus-Extension": EXTENSIONS,
                "Tus-Max-Size": str(settings.max_file_size),
                "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
            },
        )

    @post(
        "/",
        operation_id="tusCreate",
        operation_class=CreateOperation,
        request_max_body_size=None,
        summary="tus creation (with upload, deferred length, partial and final uploads)",
    )
    async def create(self, request: Request[Any, Any, Any], tus: TusService, principal: Principal) -> Response[None]:
        _check_version(request)
        state = await tus.begin(principal, _creation(request))
        location = f"{str(request.base_url).rstrip('/')}{BASE}/{state.id}"
        if request.headers.get("content-type", "").split(";")[0].strip().lower() == OFFSET_TYPE:
            state = await tus.patch(
                principal,
                state.id,
                0,
                request.stream(),
                checksum=_checksum(request.headers.get("upload-checksum")),
            )
        headers = _headers(state) | {"Location": location}
        del headers["Cache-Control"]
        return _empty(201, headers)

    @head(
        "/{upload_id:uuid}",
        operation_id="tusHead",
        operation_class=HeadOperation,
        summary="tus offset, length and metadata",
    )
    async def head_upload(
        self, request: Request[Any, Any, Any], tus: TusService, principal: Principal, upload_id: uuid.UUID
    ) -> Response[None]:
        _check_version(request)
        return await _head(tus, principal, upload_id)

    @patch(
        "/{upload_id:uuid}",
        operation_id="tusPatch",
        operation_class=PatchOperation,
        request_max_body_size=None,
        summary="tus: append bytes at Upload-Offset",
    )
    async def patch_upload(
        self, request: Request[Any, Any, Any], tus: TusService, principal: Principal, upload_id: uuid.UUID
    ) -> Response[None]:
        _check_version(request)
        return await _patch(request, tus, principal, upload_id)

    @delete(
        "/{upload_id:uuid}",
        operation_id="tusTerminate",
        operation_class=TerminateOperation,
        status_code=204,
        summary="tus termination: abort and release storage",
    )
    async def terminate(
        self, request: Request[Any, Any, Any], tus: TusService, principal: Principal, upload_id: uuid.UUID
    ) -> Response[None]:
        _check_version(request)
        await tus.terminate(principal, upload_id)
        return _empty(204, {"Tus-Resumable": TUS_VERSION})

    @post(
        "/{upload_id:uuid}",
        operation_id="tusMethodOverride",
        operation_class=OverrideOperation,
        request_max_body_size=None,
        summary="X-HTTP-Method-Override: PATCH, DELETE or HEAD sent as POST",
    )
    async def override(
        self, request: Request[Any, Any, Any], tus: TusService, principal: Principal, upload_id: uuid.UUID
    ) -> Response[None]:
        _check_version(request)
        method = request.headers.get("x-http-method-override", "").strip().upper()
        # Headers that cannot be read are refused whatever the method stands for.
        _number(request, "upload-offset")
        _number(request, "upload-length")
        if method == "PATCH":
            return await _patch(request, tus, principal, upload_id)
        if method == "DELETE":
            await tus.terminate(principal, upload_id)
            return _empty(204, {"Tus-Resumable": TUS_VERSION})
        if method == "HEAD":
            return await _head(tus, principal, upload_id)
        raise ServiceError("POST to an upload needs X-HTTP-Method-Override: PATCH, DELETE or HEAD")
