"""Answers given before the request body was read close the connection.

Without this, uvicorn keeps the connection alive and reads (then drops) the rest of the body, so a
client refused at once (413 for a declared size over a quota, 409 for a tus PATCH whose upload is
busy, 401 for a wrong key) would still send every byte of its upload, up to 3 GiB. With
``Connection: close`` the server stops reading and the client learns the answer as it sends.
"""

from __future__ import annotations

from litestar.types import ASGIApp, Message, Receive, Scope, Send


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

        async def tracking_receive() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                read = True
            return message  # type: ignore[return-value]

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not read:
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}  # type: ignore[typeddict-item]
            await send(message)

        await app(scope, tracking_receive, closing_send)  # type: ignore[arg-type]

    return middleware
