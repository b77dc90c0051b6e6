"""Periodic tasks. Dramatiq has no scheduler: every worker process runs this thread, and a Redis
``SET NX EX`` lock per task makes the whole fleet enqueue each task once per interval."""

from __future__ import annotations

import logging
import threading

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from db.settings import Settings
from workers.contracts import MAINTENANCE_QUEUE

log = logging.getLogger("sluice.scheduler")

PERIODIC: dict[str, int] = {
    "resend_pending_jobs": 10,
    "purge_old_jobs": 3600,
    "expire_upload_sessions": 300,
    "sweep_stalled_uploads": 60,
    "abort_orphan_uploads": 3600,
    "roll_up_metrics": 300,
    "rescan_waiting_files": 60,
}
"""Actor name (on the maintenance queue) → seconds between runs. Add an entry to schedule an actor."""

TICK = 2.0


class Scheduler:
    def __init__(self, broker: dramatiq.Broker, settings: Settings) -> None:
        if not isinstance(broker, RedisBroker):
            raise TypeError("the scheduler needs the Redis broker: it takes its locks in Redis")
        self.broker = broker
        self.prefix = settings.redis_prefix
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sluice-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(TICK * 2)

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            for actor_name, interval in list(PERIODIC.items()):
                try:
                    self._maybe_enqueue(actor_name, interval)
                except Exception:  # noqa: BLE001 - a Redis hiccup skips one tick, the next one retries
                    log.exception("periodic task %s was not enqueued", actor_name)

    def _maybe_enqueue(self, actor_name: str, interval: int) -> None:
        key = f"{self.prefix}:periodic:{actor_name}"
        if self.broker.client.set(key, "1", nx=True, ex=interval):
            message = dramatiq.Message(
                queue_name=MAINTENANCE_QUEUE, actor_name=actor_name, args=(), kwargs={}, options={}
            )
            self.broker.enqueue(message)
