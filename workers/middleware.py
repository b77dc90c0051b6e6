"""The worker middleware that owns every client a worker process uses, and its metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg
import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.engine import make_engine, make_sessionmaker
from db.settings import Settings
from db.storage import MinioStore, ObjectStore
from workers.contracts import MAX_CONCURRENCY
from workers.scheduler import Scheduler

log = logging.getLogger("sluice.worker")


@dataclass(slots=True)
class Clients:
    """Long-lived clients of one worker process; used only on its event-loop thread (but ``store``)."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    pool: asyncpg.Pool
    """Plain asyncpg connections for COPY; SQLAlchemy does the job-row bookkeeping."""
    store: ObjectStore
    redis: Redis
    broker: dramatiq.Broker


_clients: Clients | None = None


def current_clients() -> Clients:
    if _clients is None:
        raise RuntimeError("worker clients are not open: is the WorkerResources middleware on the broker?")
    return _clients


class WorkerResources(dramatiq.Middleware):
    """Opens the clients before the worker boots and closes them when it shuts down.

    Must come after dramatiq's ``AsyncIO`` middleware, whose event loop the clients belong to.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.scheduler: Scheduler | None = None

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        global _clients
        loop = get_event_loop_thread()
        if loop is None:
            raise RuntimeError("the AsyncIO middleware must be added before WorkerResources")
        _clients = loop.run_coroutine(self._open(broker, worker.worker_threads))
        self.scheduler = Scheduler(broker, self.settings)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.scheduler is not None:
            self.scheduler.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        global _clients
        if self.scheduler is not None:
            self.scheduler.stop()
        loop = get_event_loop_thread()
        if _clients is not None and loop is not None:
            loop.run_coroutine(self._close(_clients))
        _clients = None

    async def _open(self, broker: dramatiq.Broker, threads: int) -> Clients:
        settings = self.settings
        engine = make_engine(settings.database_url, pool_size=max(2, threads))
        # Each thread runs at most one job, which holds one connection for its lock, one per
        # window in flight (at most MAX_CONCURRENCY) and briefly one more to poll for a cancel.
        # Window commits need not wait for the disk: a window lost in a crash is lost with its
        # checkpoint and written again. The commit that completes a job turns this back on.
        pool = await asyncpg.create_pool(
            settings.sync_database_url,
            min_size=0,
            max_size=threads * (MAX_CONCURRENCY + 2),
            # An idle worker gives its connections back soon: many workers (and API processes)
            # share the server's max_connections, and a burst of windows should not hold them.
            max_inactive_connection_lifetime=30,
            server_settings={"synchronous_commit": "off"},
        )
        store = MinioStore.from_settings(settings)
        redis = Redis.from_url(settings.redis_url)
        log.info("worker clients open", extra={"threads": threads})
        return Clients(settings, engine, make_sessionmaker(engine), pool, store, redis, broker)

    async def _close(self, clients: Clients) -> None:
        await clients.pool.close()
        await clients.engine.dispose()
        await clients.redis.aclose()
