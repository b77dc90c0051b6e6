"""The actors. Import ``workers.worker`` (which sets up the broker) rather than this module."""

from __future__ import annotations

import uuid

import dramatiq

from workers.contracts import MAINTENANCE_QUEUE, PROCESS_FILE_ACTOR, PROCESS_QUEUE, SCAN_FILE_ACTOR, SCAN_QUEUE
from workers.middleware import current_clients
from workers.processing import purge_old_jobs as purge, resend_pending_jobs as resend, run_job
from workers.scanning import rescan_waiting_files as rescan, scan_file as scan

# The job enforces its own timeout_s (at most 7 days); this is the backstop if it cannot.
PROCESS_TIME_LIMIT_MS = (7 * 24 + 1) * 3600 * 1000
# The job row counts attempts and fails the job after its own max_retries (at most 10), so
# dramatiq's count only needs to be larger; the backoff covers short outages of PostgreSQL or S3.
PROCESS_MAX_RETRIES = 12


@dramatiq.actor(
    actor_name=PROCESS_FILE_ACTOR,
    queue_name=PROCESS_QUEUE,
    time_limit=PROCESS_TIME_LIMIT_MS,
    max_retries=PROCESS_MAX_RETRIES,
    min_backoff=1_000,
    max_backoff=60_000,
    notify_shutdown=True,
)
async def process_file(job_id: str) -> None:
    """Process one job; safe to run twice (a lock per job, and committed windows are skipped)."""
    await run_job(current_clients(), uuid.UUID(job_id))


# While the scanner is away the file waits: retries back off to 30 s, and once they run out the
# sweep (rescan_waiting_files) sends a new message, so a file waits as long as the outage lasts.
@dramatiq.actor(
    actor_name=SCAN_FILE_ACTOR,
    queue_name=SCAN_QUEUE,
    time_limit=4 * 3600 * 1000,
    max_retries=30,
    min_backoff=1_000,
    max_backoff=30_000,
)
async def scan_file(file_id: str) -> None:
    """Scan one stored file for malware before it is served or processed (``SLUICE_SCANNER``)."""
    await scan(current_clients(), uuid.UUID(file_id))


@dramatiq.actor(queue_name=MAINTENANCE_QUEUE, time_limit=300_000, max_retries=0)
async def rescan_waiting_files() -> None:
    """Send a scan message again for files waiting in ``scanning`` with none alive."""
    await rescan(current_clients())


@dramatiq.actor(queue_name=MAINTENANCE_QUEUE, time_limit=300_000, max_retries=0)
async def resend_pending_jobs() -> None:
    """Re-send jobs whose message may be lost: never queued, or idle and held by no worker."""
    await resend(current_clients())


@dramatiq.actor(queue_name=MAINTENANCE_QUEUE, time_limit=600_000, max_retries=0)
async def purge_old_jobs() -> None:
    """Delete finished jobs older than the retention period; their datasets stay."""
    await purge(current_clients())
