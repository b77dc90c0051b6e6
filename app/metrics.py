"""The API's domain metrics, and the ``/metrics`` endpoint that serves them with Litestar's HTTP figures.

Counters and histograms live in the process's default registry (or, when ``PROMETHEUS_MULTIPROC_DIR``
is set before start-up, in files shared by all ``sluice serve --workers`` processes). Figures that
are a state rather than a count (open sessions, queue depth, dependencies) are read at scrape time,
so every API process reports the same truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from anyio import to_thread
from litestar import Litestar, Request, Response, get
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import text

from app.auth import KEY_PREFIX
from app.events.fanout import EventChannels
from app.resources import Resources
from db.settings import Settings
from workers.broker import enqueued_at, queue_key
from workers.contracts import PROCESS_QUEUE, UPLOADS

log = logging.getLogger("sluice.metrics")

KiB, MiB, GiB = 1024, 1024**2, 1024**3
SIZE_BUCKETS = (KiB, 64 * KiB, MiB, 8 * MiB, 64 * MiB, 256 * MiB, GiB, 2 * GiB, 3 * GiB, 4 * GiB)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
SCRAPE_TIMEOUT = 2.0
"""Seconds a scrape waits for each dependency before reporting it down."""
WATCHER_REFRESH = 5.0
"""Seconds between updates of this process's SSE watcher count (read by a scrape of any process)."""

UPLOAD_DURATION = Histogram(
    "sluice_upload_duration_seconds",
    "Seconds from an upload's first byte (a session's creation) to its file being stored.",
    ["route", "kind"],
    buckets=DURATION_BUCKETS,
)
UPLOAD_SIZE = Histogram("sluice_upload_size_bytes", "Size of stored uploads.", ["route", "kind"], buckets=SIZE_BUCKETS)
BYTES_RECEIVED = Counter("sluice_upload_received_bytes", "Upload bytes received, stored or not.", ["route"])
SSE_WATCHERS = Gauge(
    "sluice_event_watchers", "Open event streams (SSE and WebSocket).", multiprocess_mode="livesum"
)
QUOTA_REFUSALS = Counter("sluice_quota_refusals", "Requests refused because an owner's quota was reached.", ["quota"])
RATE_LIMITED = Counter("sluice_rate_limited", "Requests refused with 429 by the rate limits.", ["route_group"])
REFUSALS = Counter("sluice_refusals", "Requests refused with 401, 403, 413, 415 or 429.", ["status"])


REFUSAL_STATUSES = frozenset({401, 403, 413, 415, 429})
KEY_HINT = len(KEY_PREFIX) + 6
"""Characters of a presented key that name it (what ``sluice keys`` shows), never enough to use it."""


def record_upload(route: str, kind: str, outcome: str, size: int = 0, seconds: float | None = None, *, received: int = 0) -> None:
    """An upload ended (stored, failed, aborted, expired); a stored one's size and duration go to the histograms.

    ``received``: bytes to count now (single-shot and batch uploads count theirs when they end).
    """
    UPLOADS.labels(route, outcome).inc()
    if received:
        BYTES_RECEIVED.labels(route).inc(received)
    if outcome == "stored":
        UPLOAD_SIZE.labels(route, kind).observe(size)
        if seconds is not None:
            UPLOAD_DURATION.labels(route, kind).observe(seconds)


def record_bytes(route: str, count: int) -> None:
    BYTES_RECEIVED.labels(route).inc(count)


def record_quota_refusal(quota: str) -> None:
    """A request was refused by ``quota`` (bytes, files, sessions, jobs)."""
    QUOTA_REFUSALS.labels(quota).inc()


def record_rate_limited(route_group: str) -> None:
    """A request of ``route_group`` (e.g. api, upload) was refused with 429."""
    RATE_LIMITED.labels(route_group).inc()


class _Snapshot(Collector):
    """Gauges read at scrape time, served from a registry of their own."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


async def _timed(probe: Awaitable[object]) -> object:
    return await asyncio.wait_for(probe, SCRAPE_TIMEOUT)


async def _state(resources: Resources) -> list[Metric]:
    """Dependencies up, open uploads and what the store is owed, the job queue."""
    settings = resources.settings
    up = GaugeMetricFamily("sluice_dependency_up", "1 if the dependency answered this scrape (as /ready checks it).", labels=["dependency"])
    families: list[Metric] = [up]

    async def postgres() -> None:
        async with resources.sessionmaker() as session:
            rows = (await session.execute(text(
                "SELECT protocol, count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)"
                " FROM upload_sessions WHERE state = 'receiving' GROUP BY protocol"
                " UNION ALL SELECT 'single', count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)"
                " FROM files WHERE status = 'receiving'"
            ))).all()
            owed = (await session.execute(text(
                "SELECT (SELECT count(*) FROM upload_sessions WHERE abort_pending)"
                " + (SELECT count(*) FROM files WHERE s3_upload_id IS NOT NULL AND status <> 'receiving')"
            ))).scalar_one()
        sessions = GaugeMetricFamily("sluice_upload_sessions_open", "Uploads receiving bytes now (single: single-shot and batch).", labels=["route"])
        oldest = GaugeMetricFamily("sluice_upload_sessions_oldest_seconds", "Age of the oldest upload still receiving.", labels=["route"])
        opened = {"single": (0, 0.0), "chunked": (0, 0.0), "tus": (0, 0.0)}
        for protocol, count, age in rows:
            opened["chunked" if protocol == "chunks" else protocol] = (count, float(age))
        for route, (count, age) in opened.items():
            sessions.add_metric([route], count)
            oldest.add_metric([route], age)
        owed_family = GaugeMetricFamily(
            "sluice_multipart_uploads_owed",
            "Multipart uploads the store could not release yet (the sweeper aborts them once it can).",
            value=owed,
        )
        families.extend([sessions, oldest, owed_family])

    async def redis() -> None:
        client = resources.redis
        queue = queue_key(settings, PROCESS_QUEUE)
        async with client.pipeline(transaction=False) as pipe:
            pipe.llen(queue).lindex(queue, 0)
            depth, head = await pipe.execute()
        age = 0.0
        if head is not None and (message := await client.hget(f"{queue}.msgs", head)) is not None:
            age = max(0.0, time.time() - enqueued_at(message))
        families.extend(_queue_families(depth, age))

    async def s3() -> None:
        await to_thread.run_sync(resources.store.ping, abandon_on_cancel=True)

    probes: dict[str, Callable[[], Awaitable[None]]] = {"postgres": postgres, "redis": redis, "s3": s3}
    results = await asyncio.gather(*(_timed(probe()) for probe in probes.values()), return_exceptions=True)
    for name, result in zip(probes, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("metrics: a dependency did not answer", extra={"dependency": name, "error": repr(result)})
        up.add_metric([name], 0 if isinstance(result, BaseException) else 1)
    return families


def _queue_families(depth: int, age: float) -> list[Metric]:
    """The processing queue's figures, named as on the workers' ``/metrics``."""
    return [
        _labelled("sluice_queue_depth", "Job messages waiting in the processing queue.", depth),
        _labelled("sluice_queue_oldest_seconds", "Age of the oldest job message waiting in the processing queue.", age),
    ]


def _labelled(name: str, documentation: str, value: float) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=["queue"])
    family.add_metric([PROCESS_QUEUE], value)
    return family


def watcher_count(channels: EventChannels) -> int:
    # The plugin keeps its subscribers per channel; a watcher of a batch listens on several.
    return len({watcher for watchers in channels._channels.values() for watcher in watchers})


def authorised(settings: Settings, header: str | None) -> bool:
    if not settings.metrics_token:
        return True
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.metrics_token.encode())


async def render(app: Litestar) -> bytes:
    """Everything ``/metrics`` shows: Litestar's and the domain metrics, then the scrape-time state."""
    channels = app.plugins.get(EventChannels)
    SSE_WATCHERS.set(watcher_count(channels))
    registry: CollectorRegistry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    state = CollectorRegistry()
    state.register(_Snapshot(await _state(app.state.resources)))
    return generate_latest(registry) + generate_latest(state)


UNAUTHORISED = b'{"status_code":401,"detail":"send the metrics token as \'Authorization: Bearer <SLUICE_METRICS_TOKEN>\'"}'


@get("/metrics", include_in_schema=False, opt={"exclude_from_auth": True})
async def metrics(request: Request, settings: Settings) -> Response[bytes]:
    if not authorised(settings, request.headers.get("authorization")):
        return Response(UNAUTHORISED, status_code=401, media_type="application/json", headers={"WWW-Authenticate": "Bearer"})
    return Response(await render(request.app), media_type=CONTENT_TYPE_LATEST)


@contextlib.asynccontextmanager
async def metrics_lifespan(app: Litestar, settings: Settings) -> AsyncIterator[None]:
    """Keeps this process's watcher count fresh and, with ``metrics_port``, serves ``/metrics`` there."""
    refresh = asyncio.create_task(_refresh_watchers(app))
    server = None
    if settings.metrics_port:
        # Every API process binds the port (SO_REUSEPORT); with PROMETHEUS_MULTIPROC_DIR any one answers for all.
        server = await asyncio.start_server(
            lambda r, w: _serve(app, settings, r, w), settings.metrics_host, settings.metrics_port, reuse_port=True
        )
        log.info("metrics served on their own port", extra={"host": settings.metrics_host, "port": settings.metrics_port})
    try:
        yield
    finally:
        refresh.cancel()
        if server is not None:
            server.close()
            await server.wait_closed()


async def _refresh_watchers(app: Litestar) -> None:
    channels = app.plugins.get(EventChannels)
    while True:
        SSE_WATCHERS.set(watcher_count(channels))
        await asyncio.sleep(WATCHER_REFRESH)


async def _serve(app: Litestar, settings: Settings, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One request, one response, then close: all a Prometheus scrape needs."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = (lines[0].split(" ") + ["", ""])[:3]
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:] if line)}
        if method != "GET" or target.split("?")[0] != "/metrics":
            status, body, media = "404 Not Found", b'{"status_code":404,"detail":"metrics are at GET /metrics"}', "application/json"
        elif not authorised(settings, headers.get("authorization")):
            status, body, media = "401 Unauthorized", UNAUTHORISED, "application/json"
        else:
            status, body, media = "200 OK", await render(app), CONTENT_TYPE_LATEST
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {media}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
        pass
    except Exception:
        log.exception("metrics scrape failed")
    finally:
        writer.close()


def observe_refusals(app: ASGIApp) -> ASGIApp:
    """Counts and logs each 401, 403, 413, 415 and 429 with the key that was refused: its id once the
    key is known, else the first characters of what was presented if it looks like a key."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in REFUSAL_STATUSES:
                _refused(scope, message["status"])
            await send(message)

        await app(scope, receive, watch)

    return wrapped


def _refused(scope: Scope, status: int) -> None:
    REFUSALS.labels(str(status)).inc()
    extra: dict[str, object] = {"status": status, "method": scope.get("method"), "path": scope.get("path")}
    if (key_id := scope.get("auth")) is not None:
        extra["key_id"] = str(key_id)
    else:
        header = dict(scope.get("headers") or ()).get(b"authorization", b"").decode("latin-1")
        token = header.partition(" ")[2].strip()
        if token.startswith(KEY_PREFIX):
            extra["key_prefix"] = token[:KEY_HINT]
    log.info("request refused", extra=extra)
