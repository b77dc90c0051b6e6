"""An answer given before the body was read closes the connection: a refused client stops sending
instead of having its whole upload read and dropped."""

from __future__ import annotations

import asyncio

from tests.support.servers import ApiServer

GIB = 1024**3


async def _refused_upload(api: ApiServer, key: str) -> tuple[bytes, int]:
    """Declare a 1 GiB body, answer what comes back, and count how much the server let us send."""
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(
        f"PUT /api/v1/files/big.csv HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Length: {GIB}\r\n\r\n".encode()
    )
    head = b""
    sent = 0
    block = b"a,b\n" * 16384
    try:
        async with asyncio.timeout(60):
            while b"\r\n\r\n" not in head:
                writer.write(block)
                sent += len(block)
                try:
                    await asyncio.wait_for(writer.drain(), 0.05)
                    head += await asyncio.wait_for(reader.read(65536), 0.01)
                except TimeoutError:
                    pass
            # Keep sending until the server closes: the bytes it still takes are what it reads.
            while True:
                writer.write(block)
                sent += len(block)
                await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
    return head, sent


async def test_a_refused_upload_is_cut_off_not_read_to_the_end(api: ApiServer) -> None:
    head, sent = await _refused_upload(api, "slk_wrong")
    assert head.startswith(b"HTTP/1.1 401"), head[:200]
    assert b"connection: close" in head.lower()
    assert sent < 256 * 1024 * 1024, f"{sent:,} bytes were taken after the 401"
