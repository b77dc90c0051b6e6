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

# Dramatiq's default (1 in 1000 broker calls) is tuned for busy queues; ours are mostly idle, and
# maintenance is what gives a dead worker's messages back, so run it on one call in ten.
MAINTENANCE_CHANCE = 100_000

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
