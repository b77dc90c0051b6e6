"""Builds the Dramatiq Redis broker; import it (and call ``setup_broker``) before any actor module."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from db.settings import Settings


HEARTBEAT_TIMEOUT_MS = 60_000


def namespace(settings: Settings) -> str:
    return f"{settings.redis_prefix}-dramatiq"


def heartbeats_key(settings: Settings) -> str:
    """Sorted set where Dramatiq's Redis broker records each consumer's last heartbeat (ms)."""
    return f"{namespace(settings)}:__heartbeats__"


def make_broker(settings: Settings) -> RedisBroker:
    """A Redis broker whose keys live under the deployment's prefix."""
    return RedisBroker(url=settings.redis_url, namespace=namespace(settings))


def setup_broker(settings: Settings) -> RedisBroker:
    broker = make_broker(settings)
    dramatiq.set_broker(broker)
    return broker
