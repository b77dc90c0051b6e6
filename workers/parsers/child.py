"""A parser in a child process: a fresh interpreter that sends framed messages back by pipe.

Parsing is pure Python (CSV) or a native library that may abort (calamine). In a child it uses a
core of its own instead of contending for the worker's GIL with the event loop that writes the
windows, and whatever kills it ends the child, never the worker. The child is a fresh interpreter:
not a fork of a worker with open connections and threads, and not multiprocessing's spawn, which
re-runs the parent's ``__main__``. Its job description arrives on stdin (it may hold credentials,
which must not show in a process listing); stdout and stderr stay the worker's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from multiprocessing.connection import Connection

PIPE_BYTES = 1024 * 1024
"""Pipe capacity asked of Linux: room for a few windows, so the child parses ahead of the writer."""
_F_SETPIPE_SZ = 1031


class ChildEnded(Exception):
    """The child closed its pipe without a last message; ``returncode`` says how it ended."""

    def __init__(self, returncode: int | None) -> None:
        super().__init__(f"the parser process ended (exit status {returncode})")
        self.returncode = returncode


class ChildProcess:
    """The parent's end: start ``entry(fd)`` (``"module:function"``) in a child, then read its messages."""

    def __init__(self, entry: str, job: bytes) -> None:
        module, function = entry.split(":")
        read, write = os.pipe()
        with contextlib.suppress(OSError):
            fcntl.fcntl(write, _F_SETPIPE_SZ, PIPE_BYTES)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        code = f"import sys; from {module} import {function}; {function}(int(sys.argv[1]))"
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", code, str(write)],
                pass_fds=(write,),
                stdin=subprocess.PIPE,
                env=env,
                # Its own session: a Ctrl-C meant for the worker must not fail the job it is parsing.
                start_new_session=True,
            )
        finally:
            os.close(write)
        self._receiver = Connection(read, writable=False)
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(job)
            self._process.stdin.close()
        except BrokenPipeError:
            pass

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    def receive(self, timeout: float | None = None) -> bytes:
        """The next message; TimeoutError after ``timeout`` seconds, ChildEnded if the child is gone."""
        if timeout is not None and not self._receiver.poll(timeout):
            raise TimeoutError
        try:
            return self._receiver.recv_bytes()
        except (EOFError, OSError):
            self._process.wait(10)
            raise ChildEnded(self._process.returncode) from None

    def close(self) -> None:
        """Stop the child (if it still runs) and close the pipe; safe to call from any thread, twice."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(10)
        self._receiver.close()


def child_channel(fd: int) -> tuple[bytes, Connection]:
    """The child's end: its job description (all of stdin) and the pipe to send messages on."""
    return sys.stdin.buffer.read(), Connection(fd, readable=False)
