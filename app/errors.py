"""Errors the services raise, and the handlers that turn every error into ``{status_code, detail}``."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from db.storage import ObjectMissing, StorageError

log = logging.getLogger("sluice.errors")


class ServiceError(Exception):
    """A failure the caller can act on; ``detail`` says what to change."""

    status_code = 400

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class RequestTimeout(ServiceError):
    status_code = 408


class Gone(ServiceError):
    status_code = 410


class PayloadTooLarge(ServiceError):
    status_code = 413


class UnsupportedType(ServiceError):
    status_code = 415


class Unprocessable(ServiceError):
    status_code = 422


class Unavailable(ServiceError):
    status_code = 503


RETRY_AFTER = 30
"""Seconds a 503 tells the client to wait (``Retry-After``) before it tries again."""
STORAGE_UNAVAILABLE = f"the object store is unavailable; retry in {RETRY_AFTER} s"
DATABASE_UNAVAILABLE = f"the database is unavailable or has no free connection; retry in {RETRY_AFTER} s"
DEPENDENCY_UNAVAILABLE = f"a service Sluice needs (database, Redis or object store) cannot be reached; retry in {RETRY_AFTER} s"
UNAVAILABLE_SQLSTATES = ("08", "53", "57P")
"""Connection exceptions, insufficient resources (too many clients) and a server shutting down."""


def _json(status: int, detail: str, extra: dict[str, Any] | None = None) -> Response[dict[str, Any]]:
    content: dict[str, Any] = {"status_code": status, "detail": detail}
    if extra:
        content.update(extra)
    headers = {"Retry-After": str(RETRY_AFTER)} if status == 503 else None
    return Response(content, status_code=status, media_type=MediaType.JSON, headers=headers)


def service_error_handler(_: Request, exc: ServiceError) -> Response[dict[str, Any]]:
    return _json(exc.status_code, exc.detail, exc.extra)


def storage_error_handler(request: Request, exc: StorageError) -> Response[dict[str, Any]]:
    if isinstance(exc, ObjectMissing):
        log.error("object missing on %s %s: %s", request.method, request.url.path, exc)
        return _json(410, "the file's bytes are missing from the object store (it lost them); upload the file again")
    log.error("object store failure on %s %s: %s", request.method, request.url.path, exc)
    return _json(503, STORAGE_UNAVAILABLE)


def database_error_handler(request: Request, exc: DBAPIError | PoolTimeout) -> Response[dict[str, Any]]:
    """A database that cannot be reached or is out of connections is a 503 the client can retry."""
    if isinstance(exc, PoolTimeout) or _unreachable(exc):
        log.error("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return _json(503, DATABASE_UNAVAILABLE)
    return internal_error_handler(request, exc)


def _unreachable(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    cause = exc.orig.__cause__ if exc.orig is not None else None
    return sqlstate.startswith(UNAVAILABLE_SQLSTATES) or isinstance(cause, OSError)


def connection_error_handler(request: Request, exc: ConnectionError | RedisConnectionError) -> Response[dict[str, Any]]:
    """A refused or dropped connection to a dependency (raised unwrapped by asyncpg and redis)."""
    log.error("dependency unreachable on %s %s: %r", request.method, request.url.path, exc)
    return _json(503, DEPENDENCY_UNAVAILABLE)


def http_error_handler(_: Request, exc: HTTPException) -> Response[dict[str, Any]]:
    extra = exc.extra if isinstance(exc.extra, dict) else ({"extra": exc.extra} if exc.extra else None)
    return _json(exc.status_code, exc.detail, extra)


PARAMETER_SOURCES = frozenset({"query", "path", "header", "cookie"})


def validation_error_handler(request: Request, exc: ValidationException) -> Response[dict[str, Any]]:
    """Names each field that failed and why; a bad query, path or header parameter answers 422."""
    problems = [p for p in exc.extra if isinstance(p, dict) and p.get("key")] if isinstance(exc.extra, list) else []
    if not problems:
        return http_error_handler(request, exc)
    status = 422 if {_source(p) for p in problems} <= PARAMETER_SOURCES else exc.status_code
    detail = "; ".join(
        f"{'body field' if _source(p) == 'body' else _source(p) + ' parameter'} {p['key']!r}: {p.get('message', 'invalid')}"
        for p in problems
    )
    return _json(status, detail, {"extra": exc.extra})


def _source(problem: dict[str, Any]) -> str:
    source = problem.get("source") or "body"
    return str(getattr(source, "value", source))


def internal_error_handler(request: Request, exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json(500, "internal error; it has been logged")


EXCEPTION_HANDLERS = {
    ServiceError: service_error_handler,
    StorageError: storage_error_handler,
    DBAPIError: database_error_handler,
    PoolTimeout: database_error_handler,
    ConnectionError: connection_error_handler,
    RedisConnectionError: connection_error_handler,
    ValidationException: validation_error_handler,
    HTTPException: http_error_handler,
    Exception: internal_error_handler,
}
