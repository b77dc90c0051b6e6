"""Ends a request whose body stops arriving: ``SLUICE_BODY_IDLE_TIMEOUT`` without a byte answers 408.

The clock runs only while the app waits for the client's next bytes, never while the client waits
for the app (for upload memory, or for the store): a slow server is not the client's fault. The
timeout surfaces in the handler as ``RequestTimeout`` raised where it reads the body, so each upload
route's own failure path runs (its multipart upload aborted, its memory released, its record failed).
"""

from __future__ import annotations

import asyncio

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import RequestTimeout


def idle_body_timeout(timeout: float) -> type:
    """Litestar middleware (an ASGI app factory) for ``timeout`` seconds."""

    class IdleBodyTimeout:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            body = _Body(receive, timeout)

            async def send_closing(message: Message) -> None:
                # The rest of a stalled body will not come: the connection is not reused.
                if body.timed_out and message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
                await send(message)

            try:
                await self.app(scope, body.receive, send_closing)
            finally:
                body.stop()

    return IdleBodyTimeout


class _Body:
    """One timer per request, not one per body message (a GiB arrives in some 16,000 of them): each
    receive notes when it started waiting, and the timer, when due, either cancels a receive that has
    waited the whole timeout or sets itself again for the one waiting now."""

    def __init__(self, receive: Receive, timeout: float) -> None:
        self._receive = receive
        self._timeout = timeout
        self._done = False
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._waiting: asyncio.Task[object] | None = None
        self._since = 0.0
        self._cancelling = 0
        self.timed_out = False

    async def receive(self) -> Message:
        if self._done:
            # Past the body, a receive waits for the disconnect (event streams): no clock.
            return await self._receive()
        if self.timed_out:
            raise self._error()
        task = self._waiting = asyncio.current_task()
        self._since = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(self._since + self._timeout, self._due)
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            # Ours (and nobody else's pending) only if the timer fired for this receive.
            if self.timed_out and task is not None and task.uncancel() <= self._cancelling:
                raise self._error() from None
            raise
        finally:
            self._waiting = None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._done = True
            self.stop()
        return message

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> None:
        self._timer = None
        task = self._waiting
        if task is None:
            return  # the app is busy, not waiting: the next receive sets the timer again
        due = self._since + self._timeout
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._due)
            return
        self.timed_out = True
        self._cancelling = task.cancelling()
        task.cancel()

    def _error(self) -> RequestTimeout:
        return RequestTimeout(
            f"no byte of the request body arrived for {self._timeout:g} s (SLUICE_BODY_IDLE_TIMEOUT), so the upload "
            "was stopped and nothing of it was kept; send it again"
        )
