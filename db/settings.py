"""Settings for every Sluice process, read once from ``SLUICE_*`` environment variables."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Any

from db.sql import is_plain_identifier

RESERVED_SCHEMAS = frozenset({"public", "information_schema"})

GiB = 1024**3
MiB = 1024**2


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _env(name: str, default: Any) -> Any:
    raw = os.environ.get(f"SLUICE_{name.upper()}")
    if raw is None:
        return default
    variable = f"SLUICE_{name.upper()}"
    if isinstance(default, bool):
        word = raw.strip().lower()
        if word not in _TRUE | _FALSE:
            # A typo must not quietly turn a setting off.
            raise ValueError(f"{variable}={raw!r} is not a boolean; write true or false")
        return word in _TRUE
    try:
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ValueError(f"{variable}={raw!r} is not a number") from None
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


_SIZE = re.compile(r"^\s*(\d+)\s*([kmgtp]i?b?|b)?\s*$", re.IGNORECASE)
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)s?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4, "p": 1000**5}


def parse_size(text: str, name: str) -> int | None:
    """A count or a size (``500GiB``: powers of 1024 with ``i``, of 1000 without); empty is ``None`` (unlimited)."""
    if not text.strip():
        return None
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{name}={text!r} is not a size or count; write e.g. 500GiB, 10MB or 10000")
    unit = (match.group(2) or "").lower()
    factor = 1024 ** " kmgtp".index(unit[0]) if "i" in unit else _UNITS[unit[:1]]
    return int(match.group(1)) * factor


def parse_rate(text: str, name: str) -> tuple[str, int] | None:
    """``600/minute`` as Litestar's ``("minute", 600)``; empty is ``None`` (no limit)."""
    if not text.strip():
        return None
    match = _RATE.match(text)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"{name}={text!r} is not a rate; write e.g. 600/minute (second, minute, hour or day)")
    return match.group(2).lower(), int(match.group(1))


@dataclass(frozen=True, slots=True)
class Settings:
    """One field per setting; the environment variable is ``SLUICE_`` + the field name, upper-cased."""

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/sluice"
    """SQLAlchemy URL of PostgreSQL (asyncpg driver)."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis for the Dramatiq broker and progress pub/sub."""
    redis_prefix: str = "sluice"
    """Prefix of every Redis key and channel, so several deployments (or test runs) can share one Redis."""
    s3_endpoint: str = "127.0.0.1:9000"
    """S3 endpoint as host:port, without scheme."""
    s3_access_key: str = "sluice-dev"
    s3_secret_key: str = "sluice-dev-secret"
    s3_bucket: str = "sluice"
    s3_secure: bool = False
    """Use HTTPS to reach the S3 endpoint."""
    s3_region: str = "us-east-1"
    max_file_size: int = 3 * GiB
    """Largest file accepted, in bytes."""
    part_size: int = 8 * MiB
    """S3 multipart part size for streamed uploads (at least 5 MiB)."""
    upload_parallel_parts: int = 2
    """Parts of one streamed upload sent to S3 at once; memory per upload is about (this + 1) x part_size."""
    allowed_kinds: tuple[str, ...] = ("csv", "tsv", "xlsx")
    """Detected kinds accepted; add ``other`` to store any file (stored, never processed)."""
    session_ttl: int = 24 * 3600
    """Seconds an idle chunked upload session lives."""
    upload_stall_timeout: int = 600
    """Seconds a single-shot upload (PUT or batch POST) may go without progress before the sweeper fails it
    and releases its multipart upload (its API process died); a live upload marks progress several times per timeout."""
    chunk_size: int = 8 * MiB
    """Default chunk size of chunked upload sessions."""
    max_chunk_size: int = 64 * MiB
    """Largest chunk size a session may ask for: the API holds one whole chunk per request in memory."""
    upload_memory: int = 64 * MiB
    """Bytes of upload buffers (single-shot and batch parts, chunks) one API process holds at once, taken
    in slices as bytes arrive; beyond it requests wait for a slice (TCP holds their clients back).
    At least ``max_chunk_size`` and ``part_size``. Replaces ``SLUICE_CHUNK_MEMORY``, still read when this is unset."""
    body_idle_timeout: float = 60.0
    """Seconds an upload's request body may go without a byte arriving before the request ends with 408."""
    window_rows: int = 1000
    """Rows per processing window."""
    max_concurrency: int = 5
    """Windows written at once per job."""
    job_timeout: int = 3600
    """Seconds a job may run before it is ``timed_out``."""
    job_max_retries: int = 3
    """Attempts of a job before it is failed."""
    job_retention: int = 24 * 3600
    """Seconds finished jobs are kept."""
    metrics_retention: int = 90 * 24 * 3600
    """Seconds the hourly metrics rollup (the operations dashboard's history) is kept; at least 30 days."""
    web_dist: str = "web/dist"
    """Folder of the built web app (``npm run build`` in ``web/``) served at ``/``; relative to the working directory."""
    dataset_schema: str = "datasets"
    """PostgreSQL schema that holds one table per processed file."""
    xlsx_max_uncompressed: int = 4096 * MiB
    """Largest total uncompressed size of a workbook's ZIP entries; bigger workbooks are refused unparsed."""
    xlsx_max_cells: int = 100_000_000
    """Most cells (rows × columns of the sheet's declared dimension) of a sheet that is parsed."""
    xlsx_calamine_memory: int = 256 * MiB
    """Estimated memory (90 bytes a declared cell) up to which a sheet is read by calamine, which decodes it
    whole; larger sheets are streamed from the workbook in flat memory."""
    xlsx_memory: int = 2048 * MiB
    """Address-space limit (RLIMIT_AS) of the child process that parses a workbook."""
    xlsx_timeout: float = 300.0
    """Seconds the worker waits for the XLSX parser's next window (the first comes after the whole sheet is decoded)."""
    worker_heartbeat_timeout: int = 60
    """Seconds without a heartbeat after which a worker counts as dead and its unfinished messages are redelivered."""
    worker_metrics_port: int = 9191
    """Port of the workers' Prometheus exposition server; 0 turns it off. Each ``sluice worker`` on a host needs its own."""
    metrics_host: str = "0.0.0.0"
    """Address the workers' metrics server, and the API's when ``metrics_port`` is set, listen on."""
    metrics_port: int = 0
    """Serve the API's ``/metrics`` on this port of its own instead of the API port; 0: on the API port."""
    metrics_token: str = ""
    """Bearer token that ``/metrics`` (API and workers) asks for; empty: open to whoever reaches it."""
    db_pool_size: int = 10
    """Database connections each API process keeps open (as many more are opened under load and
    closed after); size it so that every API process, worker and tool fits the server's max_connections."""
    heartbeat: float = 15.0
    """Seconds between SSE comment heartbeats."""
    shutdown_grace: float = 30.0
    """Seconds ``sluice serve`` lets open requests finish on shutdown before cancelling them; open event
    streams end at once with a ``reconnect`` event, and their clients reconnect (with Last-Event-ID) to
    another process."""
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1", "::1")
    """Addresses or networks (CIDR) of the reverse proxies whose ``X-Forwarded-For``/``-Proto`` the API
    believes (client address, ``https`` in the URLs it answers, such as tus ``Location``); ``*`` trusts anyone."""
    cors_origins: tuple[str, ...] = ()
    """Web origins (``https://app.example.com``, or ``*``) whose pages may call the API from a browser; none by default."""
    secret_key: str = ""
    """Signs stream links (at least 32 characters); ``sluice serve`` refuses to start without it. Keep it
    secret and the same on every API process; changing it invalidates the links already given out."""
    db_api_password: str = ""
    """Password of the database role ``sluice_api`` that ``sluice migrate`` creates (with the worker's); unset: no roles."""
    db_worker_password: str = ""
    """Password of the database role ``sluice_worker`` that ``sluice migrate`` creates (with the API's); unset: no roles."""
    quota_bytes: str = ""
    """Default stored-bytes quota of an owner (``500GiB``, ``10MB``, or bytes); unset: unlimited. ``sluice owners quota`` overrides it per owner."""
    quota_files: str = ""
    """Default number of files an owner may keep; unset: unlimited."""
    quota_sessions: str = ""
    """Default number of upload sessions (chunked and tus) an owner may have open at once; unset: unlimited."""
    quota_jobs: str = ""
    """Default number of processing jobs (pending or processing) an owner may have at once; unset: unlimited."""
    rate_limit: str = ""
    """Requests one API key may make (``600/minute``; units second, minute, hour, day), counted in Redis
    across every API process; unset: no limit. Upload byte routes count against ``upload_rate_limit`` instead."""
    upload_rate_limit: str = ""
    """Requests one API key may make to the upload byte routes (PUT /api/v1/files, POST /api/v1/files,
    chunk PUT, tus POST and PATCH), e.g. ``6000/minute``; unset: no limit."""
    scanner: str = ""
    """ClamAV daemon that scans every stored file before it is served or processed: ``clamd://host:3310``
    or ``clamd:///run/clamav/clamd.ctl`` (a unix socket); unset: no scanning. Set it on the API and the workers."""
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if self.part_size < 5 * MiB:
            raise ValueError("SLUICE_PART_SIZE must be at least 5 MiB (5242880): S3 refuses smaller parts")
        if self.upload_parallel_parts < 1 or self.max_file_size < 1:
            raise ValueError("SLUICE_UPLOAD_PARALLEL_PARTS and SLUICE_MAX_FILE_SIZE must be positive")
        if self.db_pool_size < 1:
            raise ValueError("SLUICE_DB_POOL_SIZE must be 1 or more")
        if self.heartbeat <= 0 or self.shutdown_grace < 0:
            raise ValueError("SLUICE_HEARTBEAT must be more than 0 seconds and SLUICE_SHUTDOWN_GRACE 0 or more")
        if self.upload_memory < max(self.max_chunk_size, self.part_size):
            raise ValueError(
                "SLUICE_UPLOAD_MEMORY must be at least SLUICE_MAX_CHUNK_SIZE and SLUICE_PART_SIZE "
                f"({max(self.max_chunk_size, self.part_size)}): a whole chunk or part is held before it is stored"
            )
        if self.body_idle_timeout <= 0:
            raise ValueError("SLUICE_BODY_IDLE_TIMEOUT must be more than 0 seconds")
        if self.metrics_retention < 30 * 24 * 3600:
            raise ValueError("SLUICE_METRICS_RETENTION must be at least 2592000 (30 days): the dashboard shows 30 days")
        # The schema name reaches DDL and a security-definer function: only a plain name of its own.
        schema = self.dataset_schema
        if not is_plain_identifier(schema) or schema in RESERVED_SCHEMAS or schema.startswith("pg_"):
            raise ValueError(
                f"SLUICE_DATASET_SCHEMA must be a plain schema name (a-z, digits and _, not starting with a digit,"
                f" at most 63 bytes, not public, information_schema or pg_*), not {schema!r}"
            )
        if self.secret_key and len(self.secret_key) < 32:
            raise ValueError("SLUICE_SECRET_KEY must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        if self.upload_stall_timeout < 1:
            raise ValueError("SLUICE_UPLOAD_STALL_TIMEOUT must be at least 1 second")
        if self.scanner and not (self.scanner.startswith("clamd://") and len(self.scanner) > len("clamd://")):
            raise ValueError(
                f"SLUICE_SCANNER={self.scanner!r} is not a clamd address; write clamd://host:3310 or clamd:///path/to/clamd.sock"
            )
        for name in ("quota_bytes", "quota_files", "quota_sessions", "quota_jobs"):
            parse_size(getattr(self, name), f"SLUICE_{name.upper()}")
        for name in ("rate_limit", "upload_rate_limit"):
            parse_rate(getattr(self, name), f"SLUICE_{name.upper()}")

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Build settings from the environment; keyword arguments win over it."""
        values = {f.name: _env(f.name, f.default) for f in dataclasses.fields(cls)}
        if "SLUICE_UPLOAD_MEMORY" not in os.environ and "SLUICE_CHUNK_MEMORY" in os.environ:
            values["upload_memory"] = int(os.environ["SLUICE_CHUNK_MEMORY"])
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def sync_database_url(self) -> str:
        """The database URL for tools that speak psycopg-free plain asyncpg DSNs."""
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
