"""The hourly metrics rollup: what happened in each hour (uploads, bytes, failures, rows, jobs),
copied from files, upload_sessions and jobs into ``hourly_metrics`` while those rows still exist.

Finished jobs are purged after ``SLUICE_JOB_RETENTION`` (24 h); the rollup runs every few minutes
over the current and the previous hour, so each hour is counted long before its jobs go. Counts of
a past hour only grow (a finished job stays finished in the hour it finished), so a row keeps the
larger of what it has and what is counted now: a purge never lowers it. Rows older than
``SLUICE_METRICS_RETENTION`` are deleted.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import dramatiq
from sqlalchemy import delete, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models.metrics import COUNTS, HourlyMetrics, hour_totals
from db.settings import Settings
from workers.contracts import MAINTENANCE_QUEUE
from workers.middleware import current_clients

log = logging.getLogger("sluice.rollup")

HOUR = timedelta(hours=1)


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


async def roll_up(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *, now: datetime | None = None
) -> list[datetime]:
    """Upsert the current and the previous hour; returns the hours written."""
    current = hour_of(now or datetime.now(UTC))
    hours = [current - HOUR, current]
    async with sessionmaker() as session:
        for start in hours:
            counted = (await session.execute(hour_totals(start, start + HOUR))).one()
            values = dict(zip(COUNTS, (int(value) for value in counted), strict=True))
            statement = insert(HourlyMetrics).values(hour=start, **values)
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=[HourlyMetrics.hour],
                    set_={
                        **{name: func.greatest(getattr(HourlyMetrics, name), statement.excluded[name]) for name in COUNTS},
                        "updated_at": func.now(),
                    },
                )
            )
        await session.execute(
            delete(HourlyMetrics).where(HourlyMetrics.hour < current - timedelta(seconds=settings.metrics_retention))
        )
        await session.commit()
    return hours


@dramatiq.actor(queue_name=MAINTENANCE_QUEUE, time_limit=300_000, max_retries=0)
async def roll_up_metrics() -> None:
    """Count the current and previous hour into the dashboard's hourly rollup."""
    clients = current_clients()
    await roll_up(clients.sessionmaker, clients.settings)
