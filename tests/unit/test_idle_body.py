"""The idle-body clock: one timer per request, yet each wait for the client is timed on its own,
and a cancel that is not the clock's (a disconnect, a shutdown) stays a cancel."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.errors import RequestTimeout
from app.idle import _Body

IDLE = 0.3


def client(gaps: list[float]) -> object:
    """A receive that answers after each of ``gaps`` seconds, then never."""

    async def receive() -> dict[str, object]:
        if not gaps:
            await asyncio.Event().wait()
        await asyncio.sleep(gaps.pop(0))
        return {"type": "http.request", "body": b"x", "more_body": True}

    return receive


async def test_waits_shorter_than_the_timeout_pass_however_long_the_body_takes() -> None:
    receive = client([0.2] * 5)
    body = _Body(receive, IDLE)  # type: ignore[arg-type]
    for _ in range(5):
        await body.receive()  # 1 s in all, each wait under 0.3 s
    started = time.monotonic()
    with pytest.raises(RequestTimeout):
        await body.receive()
    assert IDLE - 0.05 <= time.monotonic() - started < IDLE + 0.25
    assert body.timed_out
    with pytest.raises(RequestTimeout):
        await body.receive()
    body.stop()


async def test_a_cancel_from_elsewhere_stays_a_cancel() -> None:
    receive = client([])
    body = _Body(receive, IDLE)  # type: ignore[arg-type]
    task = asyncio.create_task(body.receive())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not body.timed_out
    body.stop()
