"""Builds the Dramatiq Redis broker; import it (and call ``setup_broker``) before any actor module."""

from __future__ import annotations

import json
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from db.settings import Settings


HEARTBEAT_TIMEOUT_MS = 60_000


def namespace(settings: Settings) -> str:
    return f"{settings.redis_prefix}-dramatiq"


def heartbeats_key(settings: Settings) -> str:
    """Sorted set where Dramatiq's Redis broker records each consumer's last heartbeat (ms)."""
    return f"{namespace(settings)}:__heartbeats__"


def queue_key(settings: Settings, queue: str) -> str:
    """List of the ids of a queue's waiting messages, oldest first (their bodies are in ``<key>.msgs``)."""
    return f"{namespace(settings)}:{queue}"


def enqueued_at(message: bytes) -> float:
    """Unix time at which a stored message was first enqueued."""
    return float(json.loads(message).get("message_timestamp", time.time() * 1000)) / 1000


def make_broker(settings: Settings) -> RedisBroker:
    """A Redis broker whose keys live under the deployment's prefix."""
    return RedisBroker(url=settings.redis_url, namespace=namespace(settings))


def setup_broker(settings: Settings) -> RedisBroker:
    broker = make_broker(settings)
    dramatiq.set_broker(broker)
    return broker
