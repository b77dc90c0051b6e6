"""The workers' domain metrics, the job start and end log lines, and the metrics server of a ``sluice worker``.

Dramatiq runs jobs in child processes of one main process. Their metrics are prometheus_client
multiprocess files in that main process's folder (``workers.main.metrics_folder``, put in every
process's environment before prometheus_client is imported); the server, a Dramatiq fork of the
same main process, adds them up on each scrape together with the queue's state, read from Redis then.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import shutil
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dramatiq.middleware.prometheus import Prometheus
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from redis import Redis

from db.logs import json_lines
from db.settings import Settings
from workers.broker import enqueued_at, queue_key
from workers.contracts import PROCESS_QUEUE, UPLOADS
from workers.main import FOLDERS, metrics_folder

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from workers.processing import JobRun

log = logging.getLogger("sluice.worker")

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)

JOB_DURATION = Histogram(
    "sluice_job_duration_seconds",
    "Seconds from a job's first start to its end, by file kind and final state.",
    ["kind", "state"],
    buckets=DURATION_BUCKETS,
)
JOBS = Counter("sluice_jobs", "Jobs that ended, by final state (completed, failed, cancelled, timed_out).", ["state"])
ROWS_STORED = Counter("sluice_rows_stored", "Rows stored by completed jobs.", ["kind"])
ROWS_REJECTED = Counter("sluice_rows_rejected", "Rows rejected (kept with their reasons) by completed jobs.", ["kind"])
SCANS = Counter("sluice_scans", "Malware scans, by outcome (clean, infected, error).", ["outcome"])


def record_scan(outcome: str) -> None:
    """A file was scanned: ``clean``, ``infected`` or ``error`` (the scanner could not be used)."""
    SCANS.labels(outcome).inc()


def record_uploads_ended(route: str, outcome: str, count: int = 1) -> None:
    if count:
        UPLOADS.labels(route, outcome).inc(count)


def _elapsed(run: JobRun) -> float:
    # The deadline is the job's first start plus its timeout, so this spans every attempt.
    return max(0.0, time.monotonic() - (run.deadline - run.options.timeout_s))


def job_started(run: JobRun) -> None:
    log.info(
        "job started",
        extra={
            "job_id": str(run.job_id),
            "file_id": str(run.file_id),
            "kind": str(run.kind),
            "attempt": run.attempts,
            "rows": run.rows_ok,
            "rows_rejected": run.rows_rejected,
            "duration_s": round(_elapsed(run), 3),
        },
    )


def job_ended(run: JobRun, state: str, reason: str | None) -> None:
    """Count and log the end of a job in its final ``state``."""
    elapsed = _elapsed(run)
    kind = str(run.kind)
    JOBS.labels(state).inc()
    JOB_DURATION.labels(kind, state).observe(elapsed)
    if state == "completed":
        ROWS_STORED.labels(kind).inc(run.rows_ok)
        ROWS_REJECTED.labels(kind).inc(run.rows_rejected)
    log.info(
        "job completed" if state == "completed" else "job ended",
        extra={
            "job_id": str(run.job_id),
            "file_id": str(run.file_id),
            "kind": kind,
            "state": state,
            "reason": reason,
            "attempt": run.attempts,
            "rows": run.rows_ok,
            "rows_rejected": run.rows_rejected,
            "duration_s": round(elapsed, 3),
        },
    )


class _Queue(Collector):
    """The processing queue's depth and the age of its oldest message, read from Redis per scrape."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.key = queue_key(settings, PROCESS_QUEUE)

    def collect(self) -> Iterable[Metric]:
        try:
            depth, head = self.redis.pipeline(transaction=False).llen(self.key).lindex(self.key, 0).execute()
            message = self.redis.hget(f"{self.key}.msgs", head) if head is not None else None
        except Exception as exc:  # noqa: BLE001 - a scrape shows the rest; the queue returns with Redis
            log.warning("queue figures not read", extra={"error": str(exc)})
            return []
        age = max(0.0, time.time() - enqueued_at(message)) if message is not None else 0.0
        families = []
        for name, documentation, value in (
            ("sluice_queue_depth", "Job messages waiting in the processing queue.", depth),
            ("sluice_queue_oldest_seconds", "Age of the oldest job message waiting in the processing queue.", age),
        ):
            family = GaugeMetricFamily(name, documentation, labels=["queue"])
            family.add_metric([PROCESS_QUEUE], value)
            families.append(family)
        return families


class _Memory(Collector):
    """Resident memory of each worker process (the main process's children), from /proc per scrape."""

    def __init__(self, main_pid: int) -> None:
        self.main_pid = main_pid
        self.page = os.sysconf("SC_PAGE_SIZE")

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "sluice_worker_resident_memory_bytes", "Resident memory of each worker process.", labels=["pid"]
        )
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{self.main_pid}/task/{self.main_pid}/children").read_text().split()
            for pid in children:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
                    if pid != str(os.getpid()):
                        family.add_metric([pid], pages * self.page)
        return [family]


def _authorised(token: str, header: str | None) -> bool:
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _handler(settings: Settings, folder: Path, redis: Redis) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            if self.path.split("?")[0] not in ("/", "/metrics"):
                self._send(404, b'{"status_code":404,"detail":"metrics are at GET /metrics"}', "application/json")
                return
            if not _authorised(settings.metrics_token, self.headers.get("Authorization")):
                body = b'{"status_code":401,"detail":"send the metrics token as \'Authorization: Bearer <SLUICE_METRICS_TOKEN>\'"}'
                self._send(401, body, "application/json")
                return
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
            registry.register(_Queue(redis, settings))
            registry.register(_Memory(os.getppid()))
            self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)

        def _send(self, status: int, body: bytes, media: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", media)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            pass

    return Handler


def _remove_stale(keep: Path) -> None:
    """Folders of ``sluice worker`` runs that are gone: their counts would add to this run's."""
    for folder in FOLDERS.iterdir():
        if folder == keep or not folder.name.isdigit():
            continue
        try:
            os.kill(int(folder.name), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            continue


class WorkerMetrics(Prometheus):
    """Dramatiq's message metrics, with this module's server in place of Dramatiq's (fixed to port 9191)."""

    @property
    def forks(self) -> list[Callable[[], int]]:
        return [serve_metrics]


def serve_metrics() -> int:
    """The metrics server; Dramatiq runs it in a fork of the main process."""
    json_lines()
    settings = Settings.from_env()
    folder = metrics_folder()
    _remove_stale(folder)
    redis = Redis.from_url(settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    address = (settings.metrics_host, settings.worker_metrics_port)
    try:
        server = ThreadingHTTPServer(address, _handler(settings, folder, redis))
    except OSError as exc:
        log.error(
            "worker metrics server not started: give each sluice worker on a host its own SLUICE_WORKER_METRICS_PORT",
            extra={"host": address[0], "port": address[1], "error": str(exc)},
        )
        return 1
    log.info("worker metrics served", extra={"host": address[0], "port": address[1]})
    # Dramatiq ends a fork with SystemExit from its SIGTERM handler.
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0
