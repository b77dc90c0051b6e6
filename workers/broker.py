"""Builds the Dramatiq Redis broker; import it (and call ``setup_broker``) before any actor module."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from db.settings import Settings


def make_broker(settings: Settings) -> RedisBroker:
    """A Redis broker whose keys live under the deployment's prefix."""
    return RedisBroker(url=settings.redis_url, namespace=f"{settings.redis_prefix}-dramatiq")


def setup_broker(settings: Settings) -> RedisBroker:
    broker = make_broker(settings)
    dramatiq.set_broker(broker)
    return broker
