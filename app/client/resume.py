"""Where ``sluice upload`` remembers unfinished chunked sessions, so running it again resumes them.

One small JSON file per (file path, size, mtime) under the user's cache directory
(``$XDG_CACHE_HOME/sluice/uploads``, else ``~/.cache/sluice/uploads``): a file that changed on
disk gets a new session instead of a resumed one with stale chunks, and so does the same file
sent to another server.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import msgspec


class Resumable(msgspec.Struct):
    upload_id: str
    url: str
    path: str
    size: int
    mtime_ns: int


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sluice" / "uploads"


class ResumeStore:
    def __init__(self, url: str, directory: Path | None = None) -> None:
        self.url = url.rstrip("/")
        self.directory = directory or cache_dir()

    def _file(self, path: Path, stat: os.stat_result) -> Path:
        identity = f"{path.resolve()}\n{stat.st_size}\n{stat.st_mtime_ns}"
        return self.directory / f"{hashlib.sha256(identity.encode()).hexdigest()[:32]}.json"

    def load(self, path: Path, stat: os.stat_result) -> Resumable | None:
        try:
            saved = msgspec.json.decode(self._file(path, stat).read_bytes(), type=Resumable)
        except (FileNotFoundError, msgspec.DecodeError):
            return None
        return saved if saved.url == self.url else None

    def save(self, path: Path, stat: os.stat_result, upload_id: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        record = Resumable(upload_id, self.url, str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        target = self._file(path, stat)
        temporary = target.with_suffix(".tmp")
        temporary.write_bytes(msgspec.json.encode(record))
        temporary.replace(target)

    def forget(self, path: Path, stat: os.stat_result) -> None:
        self._file(path, stat).unlink(missing_ok=True)
