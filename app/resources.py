"""The long-lived clients an API process uses, built from settings and closed on shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from dramatiq.brokers.redis import RedisBroker
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.engine import make_engine, make_sessionmaker
from db.settings import Settings
from db.storage import MinioStore, ObjectStore
from workers.broker import make_broker


@dataclass(slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    store: ObjectStore
    redis: Redis
    broker: RedisBroker

    @classmethod
    def from_settings(cls, settings: Settings) -> Resources:
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=make_sessionmaker(engine),
            store=MinioStore.from_settings(settings),
            # Only short commands go through this client (publish, counters): a Redis that hangs
            # must fail a request, not hold it forever.
            redis=Redis.from_url(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=2.0),
            broker=make_broker(settings),
        )

    async def aclose(self) -> None:
        await self.redis.aclose()
        self.broker.close()
        await self.engine.dispose()
