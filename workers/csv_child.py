"""CSV/TSV parsing in a child process that reads the object from the store itself.

The parser is pure Python and so is the event loop writing its windows: in one process they take
turns on one GIL (measured: the pipeline ran at about 40% of what either part does alone). In a
child the parser has a core of its own and the worker only receives finished windows.
"""

from __future__ import annotations

import contextlib
import gzip
import zlib
from collections.abc import Iterator
from typing import BinaryIO, Literal

import msgspec
import urllib3.exceptions

from db.settings import Settings
from db.storage import MinioStore, StorageError
from workers.parsers import ParseError, Table, Window, open_csv
from workers.parsers.child import ChildEnded, ChildProcess, child_channel

GZIP_MAGIC = b"\x1f\x8b\x08"
"""gzip's magic and its one compression method (deflate): how a compressed CSV/TSV is recognised."""


class _Job(msgspec.Struct, frozen=True):
    settings: Settings
    key: str
    window_rows: int
    encoding: str | None
    delimiter: str | None
    header: bool | None
    decimal: str | None = None


class _Opened(msgspec.Struct, tag="table"):
    table: Table


class _Part(msgspec.Struct, tag="window"):
    window: Window


class _Fail(msgspec.Struct, tag="fail"):
    reason: str
    kind: Literal["parse", "store", "internal"]


class _End(msgspec.Struct, tag="end"):
    pass


_Message = _Opened | _Part | _Fail | _End


class CsvChild:
    """The parent's view: the table once the child has sniffed the file, then its windows."""

    def __init__(
        self,
        settings: Settings,
        key: str,
        *,
        window_rows: int,
        encoding: str | None = None,
        delimiter: str | None = None,
        header: bool | None = None,
        decimal: str | None = None,
    ) -> None:
        job = _Job(settings, key, window_rows, encoding, delimiter, header, decimal)
        self._decoder = msgspec.msgpack.Decoder(_Message)
        self._process = ChildProcess("workers.csv_child:_child_main", msgspec.json.encode(job))
        try:
            opened = self._receive()
        except BaseException:
            self.close()
            raise
        self.table = opened.table if isinstance(opened, _Opened) else Table(columns=[], has_header=False)

    def windows(self) -> Iterator[Window]:
        try:
            while isinstance(message := self._receive(), _Part):
                yield message.window
        finally:
            self.close()

    def close(self) -> None:
        """Stop the child; callable from another thread while a window is being received."""
        self._process.close()

    def _receive(self) -> _Message:
        try:
            message = self._decoder.decode(self._process.receive())
        except ChildEnded as ended:
            raise RuntimeError(f"the CSV parser process ended unexpectedly (exit status {ended.returncode})") from None
        if isinstance(message, _Fail):
            error = {"parse": ParseError, "store": StorageError, "internal": RuntimeError}[message.kind]
            raise error(message.reason)
        return message


class _Compressed:
    """The stored bytes of a gzip file, counted: progress is compressed bytes read of the object's size."""

    def __init__(self, stream: BinaryIO, head: bytes) -> None:
        self._stream = stream
        self._head = head
        self.consumed = len(head)

    def read(self, size: int = -1) -> bytes:
        if self._head:
            cut = len(self._head) if size < 0 else size
            data, self._head = self._head[:cut], self._head[cut:]
            return data
        data = self._stream.read(size)
        self.consumed += len(data)
        return data


def _decompressed(stream: BinaryIO) -> tuple[BinaryIO, _Compressed | None]:
    """The object as text bytes: gzip (detected from its first bytes) is decompressed as it is read."""
    head = stream.read(len(GZIP_MAGIC))
    compressed = _Compressed(stream, head)
    if head != GZIP_MAGIC:
        return compressed, None  # type: ignore[return-value]
    return gzip.GzipFile(fileobj=compressed, mode="rb"), compressed  # type: ignore[arg-type]


def _child_main(fd: int) -> None:
    """Entry point of the child: open the object, send the table, every window, then the end."""
    job_json, conn = child_channel(fd)
    job = msgspec.json.decode(job_json, type=_Job)
    encoder = msgspec.msgpack.Encoder()
    try:
        stream = MinioStore.from_settings(job.settings).open(job.key)
        try:
            source, compressed = _decompressed(stream)
            table, windows = open_csv(
                source,
                window_rows=job.window_rows,
                encoding=job.encoding,
                delimiter=job.delimiter,
                header=job.header,
                decimal=job.decimal,
            )
            conn.send_bytes(encoder.encode(_Opened(table)))
            for window in windows:
                if compressed is not None:
                    window.bytes_read = compressed.consumed
                conn.send_bytes(encoder.encode(_Part(window)))
        finally:
            stream.close()
            with contextlib.suppress(Exception):
                stream.release_conn()  # type: ignore[attr-defined]
        conn.send_bytes(encoder.encode(_End()))
    except (BrokenPipeError, ConnectionResetError):
        return
    except ParseError as error:
        conn.send_bytes(encoder.encode(_Fail(str(error), "parse")))
    except (gzip.BadGzipFile, zlib.error, EOFError) as error:
        reason = f"the file is not valid gzip past its start ({error}); compress it again or send it uncompressed"
        conn.send_bytes(encoder.encode(_Fail(reason, "parse")))
    except (StorageError, urllib3.exceptions.HTTPError, OSError) as error:
        conn.send_bytes(encoder.encode(_Fail(f"reading the stored file failed: {type(error).__name__}: {error}", "store")))
    except Exception as error:  # noqa: BLE001 - the parent fails the job with this text
        conn.send_bytes(encoder.encode(_Fail(f"{type(error).__name__}: {error}", "internal")))
    finally:
        conn.close()
