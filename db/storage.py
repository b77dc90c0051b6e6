"""The object-store interface and its MinIO (S3) implementation.

Callers see only ``ObjectStore``; like tusd's S3 store, the implementation depends on a narrow
slice of the SDK: the multipart calls, get/stat/remove and the incomplete-upload listing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable

import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import S3Error

from db.settings import Settings


class StorageError(Exception):
    """The object store failed or could not be reached."""


@dataclass(frozen=True, slots=True)
class PartInfo:
    number: int
    etag: str


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int


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
    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> PartInfo: ...
    def complete(self, key: str, upload_id: str, parts: list[PartInfo]) -> None: ...
    def abort(self, key: str, upload_id: str) -> None: ...
    def put(self, key: str, data: bytes, content_type: str) -> None: ...
    def open(self, key: str, offset: int = 0, length: int | None = None) -> BinaryIO: ...
    def stat(self, key: str) -> ObjectInfo | None: ...
    def delete(self, key: str) -> None: ...
    def list_incomplete(self, prefix: str = "") -> Iterator[IncompleteUpload]: ...
    def ensure_bucket(self) -> None: ...
    def ping(self) -> None: ...


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
        client = Minio(
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

    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> PartInfo:
        with _translated():
            etag = self._client._upload_part(self.bucket, key, data, None, upload_id, number)
        return PartInfo(number, etag)

    def complete(self, key: str, upload_id: str, parts: list[PartInfo]) -> None:
        ordered = [Part(p.number, p.etag) for p in sorted(parts, key=lambda p: p.number)]
        with _translated():
            self._client._complete_multipart_upload(self.bucket, key, upload_id, ordered)

    def abort(self, key: str, upload_id: str) -> None:
        try:
            self._client._abort_multipart_upload(self.bucket, key, upload_id)
        except S3Error as exc:
            if exc.code != "NoSuchUpload":
                raise StorageError(f"S3 {exc.code}: {exc.message}") from exc

    def put(self, key: str, data: bytes, content_type: str) -> None:
        with _translated():
            self._client._put_object(self.bucket, key, data, {"Content-Type": content_type})

    def open(self, key: str, offset: int = 0, length: int | None = None) -> BinaryIO:
        with _translated():
            return self._client.get_object(self.bucket, key, offset=offset, length=length or 0)  # type: ignore[return-value]

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            info = self._client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}:
                return None
            raise StorageError(f"S3 {exc.code}: {exc.message}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageError(str(exc)) from exc
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


@contextmanager
def _translated() -> Iterator[None]:
    """Turns SDK and transport errors into ``StorageError`` so callers handle one type."""
    try:
        yield
    except S3Error as exc:
        raise StorageError(f"S3 {exc.code}: {exc.message}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise StorageError(f"object store unreachable: {exc}") from exc
