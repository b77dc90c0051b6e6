"""The object-store interface and its MinIO (S3) implementation.

Callers see only ``ObjectStore``; like tusd's S3 store, the implementation depends on a narrow
slice of the SDK: the multipart calls, get/stat/remove and the incomplete-upload listing.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Protocol, runtime_checkable

import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import MinioException, S3Error
from minio.helpers import MAX_PART_SIZE, quote

from db.settings import Settings


class StorageError(Exception):
    """The object store failed or could not be reached: refused, reset, timed out, retries exhausted
    or an S3 error. Every failure of the store reaches callers as this type (or ``ObjectMissing``)."""


class ObjectMissing(StorageError):
    """The store answered, and the object is not there (it was lost or removed)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"object {key} is missing from the object store")
        self.key = key


TUS_TAIL_PREFIX = "tus-tails/"
"""A tus upload's bytes after its last whole part wait in ``tus-tails/<upload id>`` for the next PATCH."""


def tus_tail_key(upload_id: object) -> str:
    return f"{TUS_TAIL_PREFIX}{upload_id}"


_MISSING = frozenset({"NoSuchKey", "NoSuchObject", "ResourceNotFound"})


@dataclass(frozen=True, slots=True)
class PartInfo:
    number: int
    etag: str


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int


@dataclass(frozen=True, slots=True)
class ObjectRange:
    key: str
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class IncompleteUpload:
    key: str
    upload_id: str
    initiated: datetime | None


@runtime_checkable
class ObjectStore(Protocol):
    """Blocking object-store operations; async callers run them in a worker thread."""

    bucket: str

    def create(self, key: str, content_type: str) -> str: ...
    def put_part(self, key: str, upload_id: str, number: int, data: bytes, sha256: str | None = None) -> PartInfo:
        """``sha256``: the hex SHA-256 of ``data`` when the caller has it, so it is not computed again."""
        ...
    def complete(self, key: str, upload_id: str, parts: list[PartInfo]) -> None: ...
    def abort(self, key: str, upload_id: str) -> None: ...
    def put(self, key: str, data: bytes, content_type: str) -> None: ...
    def compose(self, key: str, sources: list[ObjectRange], content_type: str) -> None:
        """Join byte ranges of objects into ``key`` inside the store (UploadPartCopy); every
        range but the last must be at least 5 MiB, the S3 part minimum."""
        ...
    def open(self, key: str, offset: int = 0, length: int | None = None) -> BinaryIO: ...
    def stat(self, key: str) -> ObjectInfo | None: ...
    def delete(self, key: str) -> None: ...
    def list_incomplete(self, prefix: str = "") -> Iterator[IncompleteUpload]: ...
    def ensure_bucket(self) -> None: ...
    def ping(self) -> None: ...


_PAYLOAD_SHA256 = "x-sluice-payload-sha256"

COMPOSE_COPIES = 4
"""UploadPartCopy requests of one compose in flight at once: the SDK sends them one at a time, so a
join of N partial uploads waited for N server-side copies in a row."""


class _Client(Minio):
    """The SDK, told a payload's SHA-256 that the caller already computed.

    Over plain HTTP the SDK hashes every request body to sign it; a chunk's checksum is that same
    hash, so hashing again would cost a second pass over every byte of a chunked upload.
    """

    def _build_headers(
        self, host: str, headers: dict[str, Any] | None = None, body: bytes | None = None, creds: Any = None
    ) -> tuple[dict[str, Any], datetime]:
        known = headers.pop(_PAYLOAD_SHA256, None) if headers else None
        if known is None or not body or not creds or self._base_url.is_https:
            return super()._build_headers(host, headers, body, creds)  # type: ignore[no-any-return]
        # Signed as if empty (hashing nothing), then given the body's length and hash.
        built, date = super()._build_headers(host, headers, b"", creds)
        built["Content-Length"] = str(len(body))
        built["x-amz-content-sha256"] = known
        return built, date


class MinioStore:
    """``ObjectStore`` over the ``minio`` SDK; works with MinIO and any S3 endpoint it supports."""

    def __init__(self, client: Minio, bucket: str) -> None:
        self._client = client
        self.bucket = bucket

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = 60.0, max_pool: int = 32) -> MinioStore:
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
            maxsize=max_pool,
            retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
        )
        client = _Client(
            settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=settings.s3_secure,
            region=settings.s3_region,
            http_client=http,
        )
        return cls(client, settings.s3_bucket)

    def create(self, key: str, content_type: str) -> str:
        with _translated():
            return self._client._create_multipart_upload(self.bucket, key, {"Content-Type": content_type})

    def put_part(self, key: str, upload_id: str, number: int, data: bytes, sha256: str | None = None) -> PartInfo:
        headers = {_PAYLOAD_SHA256: sha256} if sha256 else None
        with _translated():
            etag = self._client._upload_part(self.bucket, key, data, headers, upload_id, number)
        return PartInfo(number, etag)

    def complete(self, key: str, upload_id: str, parts: list[PartInfo]) -> None:
        ordered = [Part(p.number, p.etag) for p in sorted(parts, key=lambda p: p.number)]
        with _translated():
            self._client._complete_multipart_upload(self.bucket, key, upload_id, ordered)

    def abort(self, key: str, upload_id: str) -> None:
        """Release a multipart upload; one that is already gone counts as released."""
        try:
            with _translated():
                self._client._abort_multipart_upload(self.bucket, key, upload_id)
        except StorageError as exc:
            if not (isinstance(exc.__cause__, S3Error) and exc.__cause__.code == "NoSuchUpload"):
                raise

    def put(self, key: str, data: bytes, content_type: str) -> None:
        with _translated():
            self._client._put_object(self.bucket, key, data, {"Content-Type": content_type})

    def compose(self, key: str, sources: list[ObjectRange], content_type: str) -> None:
        """One multipart upload whose parts are server-side copies of the ranges, a few in flight at
        once (the bytes never pass through this process); on any failure the upload is aborted."""
        copies = _copy_ranges(sources)
        if not copies:
            self.put(key, b"", content_type)
            return
        upload_id = self.create(key, content_type)
        try:
            with ThreadPoolExecutor(min(COMPOSE_COPIES, len(copies)), thread_name_prefix="compose") as pool:
                futures = [pool.submit(self._copy_part, key, upload_id, n, r) for n, r in enumerate(copies, 1)]
                _, pending = wait(futures, return_when=FIRST_EXCEPTION)
                for future in pending:
                    future.cancel()
                # Leaving the pool waits for copies already sent, so none lands after the abort.
            failed = next((f for f in futures if not f.cancelled() and f.exception() is not None), None)
            if failed is not None:
                failed.result()
            parts = [f.result() for f in futures]
            self.complete(key, upload_id, parts)
        except BaseException as exc:
            try:
                self.abort(key, upload_id)
            except StorageError as failed:
                exc.add_note(f"multipart upload {upload_id} was not aborted ({failed}); the orphan sweeper aborts it")
            raise

    def _copy_part(self, key: str, upload_id: str, number: int, source: ObjectRange) -> PartInfo:
        headers = {
            "x-amz-copy-source": quote(f"/{self.bucket}/{source.key}"),
            "x-amz-copy-source-range": f"bytes={source.offset}-{source.offset + source.length - 1}",
        }
        with _translated():
            etag, _ = self._client._upload_part_copy(self.bucket, key, upload_id, number, headers)
        return PartInfo(number, etag)

    def open(self, key: str, offset: int = 0, length: int | None = None) -> BinaryIO:
        """A stream of the object's bytes; ``ObjectMissing`` when there is no such object."""
        with _translated(key):
            return self._client.get_object(self.bucket, key, offset=offset, length=length or 0)  # type: ignore[return-value]

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            with _translated(key):
                info = self._client.stat_object(self.bucket, key)
        except ObjectMissing:
            return None
        return ObjectInfo(key, info.size or 0)

    def delete(self, key: str) -> None:
        with _translated():
            self._client.remove_object(self.bucket, key)

    def list_incomplete(self, prefix: str = "") -> Iterator[IncompleteUpload]:
        key_marker: str | None = None
        upload_id_marker: str | None = None
        while True:
            with _translated():
                result = self._client._list_multipart_uploads(
                    self.bucket, prefix=prefix, key_marker=key_marker, upload_id_marker=upload_id_marker
                )
            for upload in result.uploads:
                yield IncompleteUpload(upload.object_name, upload.upload_id, upload.initiated_time)
            if not result.is_truncated:
                return
            key_marker, upload_id_marker = result.next_key_marker, result.next_upload_id_marker

    def ensure_bucket(self) -> None:
        with _translated():
            if not self._client.bucket_exists(self.bucket):
                self._client.make_bucket(self.bucket)

    def ping(self) -> None:
        with _translated():
            if not self._client.bucket_exists(self.bucket):
                raise StorageError(f"bucket {self.bucket!r} does not exist")


def _copy_ranges(sources: list[ObjectRange]) -> list[ObjectRange]:
    """The ranges as copyable parts: empty ranges dropped, ranges over S3's 5 GiB part limit split."""
    parts = []
    for source in sources:
        for start in range(0, source.length, MAX_PART_SIZE):
            parts.append(ObjectRange(source.key, source.offset + start, min(MAX_PART_SIZE, source.length - start)))
    return parts


@contextmanager
def _translated(key: str | None = None) -> Iterator[None]:
    """Turns SDK and transport errors into ``StorageError`` so callers handle one type; with ``key``,
    an answer that the object does not exist becomes ``ObjectMissing``."""
    try:
        yield
    except S3Error as exc:
        if key is not None and exc.code in _MISSING:
            raise ObjectMissing(key) from exc
        raise StorageError(f"S3 {exc.code}: {exc.message}") from exc
    except MinioException as exc:
        raise StorageError(f"object store failed: {exc}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise StorageError(f"object store unreachable: {type(exc).__name__}: {exc}") from exc
