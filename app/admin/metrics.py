"""The operations dashboard's numbers: cards, an hourly series over 24 h / 7 d / 30 d, and health.

Past hours come from the ``hourly_metrics`` rollup (workers/rollup.py), which outlives the job
retention; the current and previous hour are also counted live from files, upload_sessions and
jobs, and each column takes the larger of the two, so the series is current between rollups.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from anyio import to_thread
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.schemas import Metrics, MetricsCards, MetricsHealth, MetricsPoint
from app.errors import Unavailable
from app.ops.controller import _check
from app.resources import Resources
from db.models import File, Job, SessionState, UploadSession
from db.models.metrics import COUNTS, HourlyMetrics, hour_totals
from workers.broker import HEARTBEAT_TIMEOUT_MS, heartbeats_key, queue_key
from workers.contracts import PROCESS_QUEUE

HOUR = timedelta(hours=1)
RANGES = {"24h": 24, "7d": 7 * 24, "30d": 30 * 24}
"""Range → hours in the series."""
RANGE_PATTERN = "^(" + "|".join(RANGES) + ")$"
MiB = 1024 * 1024
LIST_TIMEOUT = 10.0
"""Seconds the bucket listing of incomplete uploads may take before the card gives up."""

Counts = dict[str, int]


class MetricsService:
    def __init__(self, session: AsyncSession, resources: Resources) -> None:
        self.session = session
        self.resources = resources

    async def metrics(self, window: str, *, now: datetime | None = None) -> Metrics:
        now = now or datetime.now(UTC)
        current = now.replace(minute=0, second=0, microsecond=0)
        start = current - (RANGES[window] - 1) * HOUR
        health, incomplete = await asyncio.gather(self.health(), self._incomplete())
        if health.postgres != "ok":
            raise Unavailable(f"PostgreSQL does not answer ({health.postgres}); the dashboard's numbers live there")
        hours = await self._hours(start, current)
        series = [
            MetricsPoint(hour=hour, **hours.get(hour, dict.fromkeys(COUNTS, 0)))
            for hour in (start + i * HOUR for i in range(RANGES[window]))
        ]
        today = current.replace(hour=0)
        uploads = sum(point.uploads for point in series)
        failures = sum(point.upload_failures for point in series)
        jobs = {
            str(state): count
            for state, count in await self.session.execute(select(Job.state, func.count()).group_by(Job.state))
        }
        live = await self.session.scalar(
            select(func.count()).select_from(UploadSession).where(UploadSession.state == SessionState.receiving)
        )
        cards = MetricsCards(
            files_today=sum(p.uploads for p in series if p.hour >= today),
            bytes_today=sum(p.bytes for p in series if p.hour >= today),
            upload_success_rate=uploads / (uploads + failures) if uploads + failures else None,
            median_upload_mib_s=await self._median_speed(start),
            rows_ingested=sum(point.rows for point in series),
            jobs_by_state=jobs,
            queue_depth=await self._queue_depth() if health.redis == "ok" else 0,
            live_sessions=live or 0,
            incomplete_multipart_uploads=incomplete if health.storage == "ok" and incomplete is not None else 0,
        )
        return Metrics(range=window, bucket_seconds=3600, cards=cards, series=series, health=health)

    async def _hours(self, start: datetime, current: datetime) -> dict[datetime, Counts]:
        """Each hour's counts: the rollup's rows, raised to the live count for the last two hours."""
        rows = await self.session.scalars(select(HourlyMetrics).where(HourlyMetrics.hour >= start))
        hours = {row.hour: {name: int(getattr(row, name)) for name in COUNTS} for row in rows}
        for hour in (current - HOUR, current):
            if hour < start:
                continue
            counted = (await self.session.execute(hour_totals(hour, hour + HOUR))).one()
            rolled = hours.get(hour, dict.fromkeys(COUNTS, 0))
            hours[hour] = {name: max(rolled[name], int(value)) for name, value in zip(COUNTS, counted, strict=True)}
        return hours

    async def _median_speed(self, start: datetime) -> float | None:
        """File records are never deleted (a deleted file keeps its row), so this is read live."""
        speed = func.percentile_cont(0.5).within_group(File.size * 1000.0 / File.duration_ms / MiB)
        median = await self.session.scalar(
            select(speed).where(File.stored_at >= start, File.duration_ms > 0, File.size > 0)
        )
        return None if median is None else float(median)

    async def _queue_depth(self) -> int:
        return int(await self.resources.redis.llen(queue_key(self.resources.settings, PROCESS_QUEUE)))

    async def _incomplete(self) -> int | None:
        store = self.resources.store

        def count() -> int:
            return sum(1 for _ in store.list_incomplete())

        try:
            return await asyncio.wait_for(to_thread.run_sync(count, abandon_on_cancel=True), LIST_TIMEOUT)
        except Exception:  # noqa: BLE001 - the storage health check says what is wrong
            return None

    async def health(self) -> MetricsHealth:
        """The checks of ``/ready``, plus whether any worker sent a heartbeat lately."""
        resources = self.resources

        async def postgres() -> None:
            async with resources.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        async def storage() -> None:
            await to_thread.run_sync(resources.store.ping, abandon_on_cancel=True)

        async def workers() -> None:
            since = time.time() * 1000 - HEARTBEAT_TIMEOUT_MS
            if not await resources.redis.zcount(heartbeats_key(resources.settings), since, "+inf"):
                raise RuntimeError("no worker alive: jobs wait in the queue")

        pg, redis, s3, alive = await asyncio.gather(
            _check(postgres), _check(resources.redis.ping), _check(storage), _check(workers)
        )
        if redis != "ok":
            alive = "unknown: Redis does not answer"
        elif alive.startswith("failed: "):
            alive = alive.removeprefix("failed: ")
        return MetricsHealth(postgres=pg, redis=redis, storage=s3, workers=alive)

