"""A real ClamAV daemon (Debian's ``clamd``) on a signature database the tests write themselves."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.servers import free_port

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
"""The antivirus industry's harmless test string: what every scanner reports, and nothing else does."""
SIGNATURE = "Sluice.Test.EICAR"
"""The name the test database gives it; clamd reports it with ``.UNOFFICIAL`` (an unsigned database)."""


def clamd_binary() -> str | None:
    return shutil.which("clamd") or shutil.which("clamd", path="/usr/sbin:/usr/local/sbin")


class ClamdServer:
    """``clamd -c <conf>`` in the foreground on a loopback port, with one body signature (EICAR)."""

    def __init__(self, *, stream_max_length: str = "2000M") -> None:
        binary = clamd_binary()
        if binary is None:
            raise RuntimeError("clamd is not installed (Debian: apt-get install clamav-daemon)")
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="sluice-clamd-"))
        (self.dir / "db").mkdir()
        (self.dir / "db" / "sluice-test.ndb").write_text(f"{SIGNATURE}:0:*:{EICAR.hex()}\n")
        self.port = free_port()
        self.url = f"clamd://127.0.0.1:{self.port}"
        self.conf = self.dir / "clamd.conf"
        # The limits Sluice's README asks for: segments of 1 GiB (plus overlap) per stream.
        self.conf.write_text(
            "\n".join(
                [
                    "Foreground yes",
                    f"DatabaseDirectory {self.dir / 'db'}",
                    "TCPAddr 127.0.0.1",
                    f"TCPSocket {self.port}",
                    f"LogFile {self.dir / 'clamd.log'}",
                    f"StreamMaxLength {stream_max_length}",
                    "MaxScanSize 4000M",
                    "MaxFileSize 2000M",
                    "MaxScanTime 600000",
                    "SelfCheck 3600",
                ]
            )
            + "\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"clamd exited with {self.process.returncode}:\n{self.log()}")
            if self.ping():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"clamd did not answer PING within {timeout}s:\n{self.log()}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"zPING\0")
                return sock.recv(16) == b"PONG\0"
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def log(self) -> str:
        path = self.dir / "clamd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
