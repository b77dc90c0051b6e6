"""The event streams over a WebSocket, for clients that already speak it: the same documents and ids.

Each event is one text message, ``{"event": ..., "id": ..., "data": <the SSE data document>}``;
the socket closes (1000) after the terminal event, or (1012) when the server stops: reconnect.
Refusals close it with 4000 + the status the SSE route would answer (4404 no such stream, 4422 a
bad ``last_event_id``), the detail as reason.
"""

from __future__ import annotations

from collections.abc import Awaitable
from contextlib import aclosing

import anyio
from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect

from app.errors import ServiceError
from app.events.service import HEARTBEAT, Stream

MAX_REASON_BYTES = 123
"""What a close frame's reason may hold."""
SERVICE_RESTART = 1012
"""The close code of a socket whose server is stopping (the stream's ``reconnect`` event)."""


def message(event: str, id_: int, data: bytes) -> bytes:
    # ``data`` is already a JSON document: spliced in, not decoded and encoded again.
    return b'{"event":"%s","id":%d,"data":%s}' % (event.encode(), id_, data)


async def serve(socket: WebSocket, opening: Awaitable[Stream | None]) -> None:
    """Accept, then send the events of the SSE route's stream that ``opening`` opens, until its end."""
    await socket.accept()
    try:
        stream = await opening
    except ServiceError as exc:
        await socket.close(code=4000 + exc.status_code, reason=_reason(exc.detail))
        return
    if stream is None:
        await socket.close(code=1000, reason="the end of this stream was already received")
        return
    # Closed explicitly: the stream's cleanup releases the shared subscription.
    async with aclosing(stream), anyio.create_task_group() as tasks:
        tasks.start_soon(_until_gone, socket, tasks.cancel_scope)
        try:
            async for item in stream:
                if item is HEARTBEAT:
                    continue  # the server's WebSocket pings keep the connection alive
                if item.event == "reconnect":
                    await socket.close(code=SERVICE_RESTART, reason="this API process is stopping; reconnect")
                    return
                data = item.data if isinstance(item.data, bytes) else str(item.data).encode()
                await socket.send_data(message(str(item.event), int(item.id or 0), data), mode="text")
        except WebSocketDisconnect:
            pass
        else:
            await socket.close(code=1000)
        finally:
            tasks.cancel_scope.cancel()


async def _until_gone(socket: WebSocket, scope: anyio.CancelScope) -> None:
    """Ends the stream (and its subscription) as soon as the client goes away."""
    try:
        while True:
            await socket.receive_data(mode="text")
    except WebSocketDisconnect:
        scope.cancel()


def _reason(detail: str) -> str:
    return detail.encode()[:MAX_REASON_BYTES].decode(errors="ignore")
