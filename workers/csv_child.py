"""CSV/TSV parsing in a child process that reads the object from the store itself.

The parser is pure Python and so is the event loop writing its windows: in one process they take
turns on one GIL (measured: the pipeline ran at about 40% of what either part does alone). In a
child the parser has a core of its own and the worker only receives finished windows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import msgspec
import urllib3.exceptions

from db.settings import Settings
from db.storage import MinioStore, StorageError
from workers.parsers import ParseError, Table, Window, open_csv
from workers.parsers.child import ChildEnded, ChildProcess, child_channel


class _Job(msgspec.Struct, frozen=True):
    settings: Settings
    key: str
    window_rows: int
    encoding: str | None
    delimiter: str | None
    header: bool | None


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
    ) -> None:
        job = _Job(settings, key, window_rows, encoding, delimiter, header)
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


def _child_main(fd: int) -> None:
    """Entry point of the child: open the object, send the table, every window, then the end."""
    job_json, conn = child_channel(fd)
    job = msgspec.json.decode(job_json, type=_Job)
    encoder = msgspec.msgpack.Encoder()
    try:
        stream = MinioStore.from_settings(job.settings).open(job.key)
        try:
            table, windows = open_csv(
                stream, window_rows=job.window_rows, encoding=job.encoding, delimiter=job.delimiter, header=job.header
            )
            conn.send_bytes(encoder.encode(_Opened(table)))
            for window in windows:
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
    except (StorageError, urllib3.exceptions.HTTPError, OSError) as error:
        conn.send_bytes(encoder.encode(_Fail(f"reading the stored file failed: {type(error).__name__}: {error}", "store")))
    except Exception as error:  # noqa: BLE001 - the parent fails the job with this text
        conn.send_bytes(encoder.encode(_Fail(f"{type(error).__name__}: {error}", "internal")))
    finally:
        conn.close()
