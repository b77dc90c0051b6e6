"""Publishes progress events: numbered, kept as the channel's snapshot, and sent on Redis pub/sub."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from redis.asyncio import Redis

from workers.contracts import JobEvent, UploadEvent, seq_key, snapshot_key

Event = TypeVar("Event", JobEvent, UploadEvent)
SNAPSHOT_TTL = 7 * 24 * 3600

# One round trip, atomic: number the event, store it as the snapshot, publish it.
_PUBLISH = """
local seq = redis.call('INCR', KEYS[1])
local payload = string.gsub(ARGV[1], '"seq":0', '"seq":' .. seq, 1)
redis.call('SET', KEYS[2], payload, 'EX', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[2], payload)
return seq
"""


async def publish(redis: Redis, channel: str, event: Event) -> Event:
    """Publish ``event`` on ``channel``; returns it with the ``seq`` it was given."""
    template = msgspec.json.encode(msgspec.structs.replace(event, seq=0)).replace(b"{", b'{"seq":0,', 1)
    seq = await redis.eval(_PUBLISH, 2, seq_key(channel), snapshot_key(channel), template, channel, SNAPSHOT_TTL)
    return msgspec.structs.replace(event, seq=int(seq))


def decode_job_event(payload: bytes) -> JobEvent:
    return _job_decoder.decode(payload)


def decode_upload_event(payload: bytes) -> UploadEvent:
    return _upload_decoder.decode(payload)


_job_decoder = msgspec.json.Decoder(JobEvent)
_upload_decoder = msgspec.json.Decoder(UploadEvent)
