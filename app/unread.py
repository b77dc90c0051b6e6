"""Answers given before the request body was read close the connection, after a short linger.

Without this, uvicorn keeps the connection alive and reads (then drops) the rest of the body, so a
client refused at once (413 for a declared size over a quota, 409 for a tus PATCH whose upload is
busy, 401 for a wrong key) would still send every byte of its upload, up to 3 GiB. The answer is
sent with ``Connection: close``; before the connection closes, up to ``LINGER_BYTES`` more of the
body are read and dropped (at most ``LINGER_SECONDS``), as nginx's lingering close does: a client
that reads the answer only once it has sent its body (most HTTP libraries) then still gets it,
instead of a reset, whenever the rest of its body is small.
"""

from __future__ import annotations

import asyncio
import time

from litestar.types import ASGIApp, Message, Receive, Scope, Send

LINGER_BYTES = 64 * 1024 * 1024
LINGER_SECONDS = 5.0


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
        if name == b"transfer-encoding":
            return True
    return False


def close_unread_bodies(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await app(scope, receive, send)
            return
        read = False
        closing = False

        async def tracking_receive() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                read = True
            return message  # type: ignore[return-value]

        async def linger() -> None:
            drained, deadline = 0, time.monotonic() + LINGER_SECONDS
            while not read and drained < LINGER_BYTES:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    message = await asyncio.wait_for(tracking_receive(), remaining)
                except TimeoutError:
                    return
                drained += len(message.get("body", b""))

        async def closing_send(message: Message) -> None:
            nonlocal closing
            if message["type"] == "http.response.start" and not read:
                closing = True
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}  # type: ignore[typeddict-item]
            if closing and message["type"] == "http.response.body" and not message.get("more_body", False):
                # uvicorn closes the connection on the last body message: send the bytes, linger, then end.
                await send({**message, "more_body": True})  # type: ignore[typeddict-item]
                await linger()
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await app(scope, tracking_receive, closing_send)  # type: ignore[arg-type]

    return middleware
