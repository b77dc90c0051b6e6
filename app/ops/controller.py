"""Operational routes: liveness, readiness of every dependency, Prometheus metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec
from anyio import to_thread
from litestar import Controller, MediaType, Response, get
from litestar.datastructures import State
from sqlalchemy import text

from app.openapi import response
from app.resources import Resources
from workers.broker import HEARTBEAT_TIMEOUT_MS, heartbeats_key

CHECK_TIMEOUT = 2.0


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str
    checks: dict[str, str]
    workers: str


async def _check(probe: Callable[[], Awaitable[object]]) -> str:
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT)
    except TimeoutError:
        return f"timed out after {CHECK_TIMEOUT:g}s"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by name
        return f"failed: {exc}"[:300]
    return "ok"


async def _workers(resources: Resources) -> str:
    """Live Dramatiq consumers; informational, since uploads are accepted while no worker runs."""
    since = time.time() * 1000 - HEARTBEAT_TIMEOUT_MS
    alive = await resources.redis.zcount(heartbeats_key(resources.settings), since, "+inf")
    return f"{alive} alive" if alive else "none alive: jobs wait in the queue until a worker starts"


class OpsController(Controller):
    tags = ["operations"]
    opt = {"exclude_from_auth": True}

    @get("/health", operation_id="health", summary="The process is alive (no dependency checks)")
    async def health(self) -> Health:
        return Health(status="ok")

    @get(
        "/ready",
        operation_id="ready",
        summary="PostgreSQL, Redis and the S3 bucket all answer",
        responses={503: response(Readiness, "A dependency does not answer: status and checks name it")},
    )
    async def ready(self, state: State) -> Response[Readiness]:
        resources: Resources = state.resources

        async def postgres() -> None:
            async with resources.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        async def s3() -> None:
            await to_thread.run_sync(resources.store.ping, abandon_on_cancel=True)

        names = ("postgres", "redis", "s3")
        results = await asyncio.gather(_check(postgres), _check(resources.redis.ping), _check(s3))
        checks = dict(zip(names, results, strict=True))
        failed = [name for name, result in checks.items() if result != "ok"]
        body = Readiness(
            status="ok" if not failed else "unavailable: " + ", ".join(failed),
            checks=checks,
            workers=await _workers(resources) if checks["redis"] == "ok" else "unknown",
        )
        return Response(body, status_code=503 if failed else 200, media_type=MediaType.JSON)
