"""The Dramatiq entry module: ``python -m dramatiq workers.worker`` (what ``sluice worker`` runs).

Builds the broker from the environment's settings, adds the middleware, then imports the actors.
"""

from __future__ import annotations

import os
import tempfile

from dramatiq.middleware import AsyncIO

from db.settings import Settings
from workers.broker import setup_broker
from workers.middleware import WorkerResources

# Maintenance is what gives a dead worker's messages back. Dramatiq runs it on 1 broker call in
# 1000, tuned for busy queues; ours are mostly idle (an idle worker polls each queue about 4 times
# a second), so 1 in 40 brings a dead worker's jobs back within seconds of its heartbeat timeout.
MAINTENANCE_CHANCE = 25_000

settings = Settings.from_env()
broker = setup_broker(settings)
broker.heartbeat_timeout = settings.worker_heartbeat_timeout * 1000
broker.maintenance_chance = MAINTENANCE_CHANCE
broker.add_middleware(AsyncIO())
broker.add_middleware(WorkerResources(settings))
if settings.worker_metrics_port:
    # Dramatiq's Prometheus middleware reads its port and data folder from the environment at import.
    os.environ["dramatiq_prom_port"] = str(settings.worker_metrics_port)
    os.environ["dramatiq_prom_db"] = os.path.join(
        tempfile.gettempdir(), f"sluice-worker-metrics-{settings.worker_metrics_port}"
    )
    from dramatiq.middleware.prometheus import Prometheus

    broker.add_middleware(Prometheus())

import workers.actors  # noqa: E402,F401 - registers the actors on the broker set up above
import workers.maintenance  # noqa: E402,F401 - the upload upkeep actors, same broker
import workers.rollup  # noqa: E402,F401 - the dashboard's hourly rollup, same broker
