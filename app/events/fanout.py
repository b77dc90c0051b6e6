"""The fan-out: one Redis pub/sub connection per API process, shared by every event stream.

Litestar's channels plugin keeps that connection, subscribes a Redis channel while at least one
stream watches it and unsubscribes it when the last one leaves. Four small extensions: a backend
whose reader reconnects when Redis drops it, a subscriber that marks idle periods (heartbeats), a
plugin that owns its own bounded Redis client, so thousands of watchers reading snapshots never
open thousands of connections, and that tells every stream to end when the server is told to stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import AsyncGenerator, Callable, Iterable
from types import FrameType, TracebackType
from typing import Any, cast

from litestar.channels import ChannelsPlugin, Subscriber
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from db.settings import Settings

log = logging.getLogger("sluice.events")

REDIS_CONNECTIONS = 8
"""Connections of the events client: one for pub/sub, the rest for snapshot reads (they queue beyond it)."""
MAX_RECONNECT_DELAY = 5.0
"""Longest wait between attempts to reach Redis again when the subscriber connection is lost."""
BACKLOG = 256
"""Events held per slow watcher; older ones are dropped first (each event carries the whole state)."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

SignalHandler = Callable[[int, FrameType | None], Any]


class ReconnectingPubSubBackend(RedisChannelsPubSubBackend):
    """The plugin's Redis pub/sub backend, whose reader survives a dropped connection.

    As shipped, the reader ends on the first connection error and every stream goes silent until
    the process restarts. Here it reconnects, which resubscribes every channel; streams catch up on
    what was published meanwhile from the snapshot keys at their next heartbeat.
    """

    async def stream_events(self) -> AsyncGenerator[tuple[str, Any], None]:
        delay = 0.1
        while True:
            try:
                async for item in super().stream_events():
                    delay = 0.1
                    yield item
            except (RedisError, OSError) as exc:
                log.warning("event subscriber lost Redis; reconnecting", extra={"error": str(exc)})
                if self._pub_sub.connection is not None:
                    await self._pub_sub.connection.disconnect()
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)


class Watcher(Subscriber):
    """A channels subscriber whose stream also carries a heartbeat marker after each idle period.

    One timer per watcher, re-armed when it fires, rather than a timeout around every read: the
    read is the hot path of the fan-out.
    """

    HEARTBEAT = b""
    CLOSING = b"\x00closing"
    """Put in every stream when the server stops: the stream says ``reconnect`` and ends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._every = 0.0
        self._active = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def beat_every(self, seconds: float) -> None:
        """Put ``HEARTBEAT`` in the stream whenever ``seconds`` pass without an event."""
        loop = asyncio.get_running_loop()
        self._every, self._active = seconds, loop.time()
        self._timer = loop.call_at(self._active + seconds, self._beat)

    def stop_beating(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def next_event(self) -> bytes | None:
        """The next payload or ``HEARTBEAT``; ``None`` once unsubscribed."""
        item = await self._queue.get()
        self._queue.task_done()
        if item:
            self._active = asyncio.get_running_loop().time()
        return item

    def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._active >= self._every:
            self.put_nowait(self.HEARTBEAT)
            self._active = loop.time()
        self._timer = loop.call_at(self._active + self._every, self._beat)


class EventChannels(ChannelsPlugin):
    """The channels plugin over a Redis client it owns and closes on shutdown."""

    def __init__(self, redis: Redis) -> None:
        super().__init__(
            backend=ReconnectingPubSubBackend(redis=redis),
            arbitrary_channels_allowed=True,
            subscriber_max_backlog=BACKLOG,
            subscriber_backlog_strategy="dropleft",
            subscriber_class=Watcher,
        )
        self.redis = redis
        self.closing = False
        self._chained: dict[int, tuple[SignalHandler, SignalHandler]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> EventChannels:
        pool = BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=REDIS_CONNECTIONS, client_name=f"sluice-events-{os.getpid()}"
        )
        return cls(Redis.from_pool(pool))

    async def watch(self, channels: list[str]) -> Watcher:
        watcher = cast(Watcher, await self.subscribe(channels))
        if self.closing:
            watcher.put_nowait(Watcher.CLOSING)
        return watcher

    def close_streams(self) -> None:
        """Tell every open stream, and any opened from now on, to end with a ``reconnect`` event."""
        self.closing = True
        for watcher in {w for watchers in self._channels.values() for w in watchers}:
            watcher.put_nowait(Watcher.CLOSING)

    async def __aenter__(self) -> EventChannels:
        await super().__aenter__()
        self._chain_stop_signals(asyncio.get_running_loop())
        return self

    def _chain_stop_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        # uvicorn waits for open connections before its lifespan shutdown runs, so an on_shutdown hook
        # would come too late: streams must hear of the stop when the server does, from its signal.
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in STOP_SIGNALS:
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue  # no server handles this signal here: it stops the process as it always did

            def stop(signum: int, frame: FrameType | None, previous: SignalHandler = previous) -> None:
                loop.call_soon_threadsafe(self.close_streams)
                previous(signum, frame)

            self._chained[sig] = (previous, stop)
            signal.signal(sig, stop)

    def _unchain_stop_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, (previous, ours) in self._chained.items():
            if signal.getsignal(sig) is ours:
                signal.signal(sig, previous)
        self._chained.clear()

    async def unsubscribe(self, subscriber: Subscriber, channels: str | Iterable[str] | None = None) -> None:
        """Unsubscribe, and forget channels nobody watches (the plugin keeps them forever otherwise)."""
        names = [channels] if isinstance(channels, str) else list(channels or self._channels)
        await super().unsubscribe(subscriber, names)
        for name in names:
            if not self._channels.get(name, True):
                del self._channels[name]

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self._unchain_stop_signals()
        try:
            await super().__aexit__(exc_type, exc_val, exc_tb)
        finally:
            await self.redis.aclose()
