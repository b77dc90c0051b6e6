"""The Dramatiq entry module: ``python -m workers.main workers.worker`` (what ``sluice worker`` runs).

Builds the broker from the environment's settings, adds the middleware, then imports the actors.
"""

from __future__ import annotations

import os

from dramatiq.middleware import AsyncIO

from db.logs import json_lines
from db.settings import Settings
from workers.main import metrics_folder

settings = Settings.from_env()
if settings.worker_metrics_port:
    # ``sluice worker`` (workers.main) has set this for every process already; this covers Dramatiq
    # started directly, provided nothing imported prometheus_client yet (it picks its storage then).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ["dramatiq_prom_db"] = str(metrics_folder())

from workers.broker import setup_broker  # noqa: E402 - after the metrics folder is in the environment
from workers.middleware import WorkerResources  # noqa: E402

# Maintenance is what gives a dead worker's messages back. Dramatiq runs it on 1 broker call in
# 1000, tuned for busy queues; ours are mostly idle (an idle worker polls each queue about 4 times
# a second), so 1 in 40 brings a dead worker's jobs back within seconds of its heartbeat timeout.
MAINTENANCE_CHANCE = 25_000

# Dramatiq configured this process's logging before importing this module: keep its handler, in JSON.
json_lines()
broker = setup_broker(settings)
broker.heartbeat_timeout = settings.worker_heartbeat_timeout * 1000
broker.maintenance_chance = MAINTENANCE_CHANCE
broker.add_middleware(AsyncIO())
broker.add_middleware(WorkerResources(settings))
if settings.worker_metrics_port:
    from workers.metrics import WorkerMetrics

    broker.add_middleware(WorkerMetrics())

import workers.actors  # noqa: E402,F401 - registers the actors on the broker set up above
import workers.maintenance  # noqa: E402,F401 - the upload upkeep actors, same broker
import workers.rollup  # noqa: E402,F401 - the dashboard's hourly rollup, same broker
