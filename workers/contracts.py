"""What the API and the workers agree on: queue and actor names, messages, Redis channel names.

The API imports this module (and ``workers.broker``) but never actor code.
"""

from __future__ import annotations

import uuid

import dramatiq

PROCESS_QUEUE = "process"
PROCESS_FILE_ACTOR = "process_file"
MAINTENANCE_QUEUE = "maintenance"


def process_file_message(job_id: uuid.UUID) -> dramatiq.Message[None]:
    """The message that asks a worker to run one job; it carries the id, never the data."""
    return dramatiq.Message(
        queue_name=PROCESS_QUEUE, actor_name=PROCESS_FILE_ACTOR, args=(str(job_id),), kwargs={}, options={}
    )


def job_channel(prefix: str, job_id: uuid.UUID | str) -> str:
    return f"{prefix}:events:job:{job_id}"


def upload_channel(prefix: str, upload_id: uuid.UUID | str) -> str:
    return f"{prefix}:events:upload:{upload_id}"


def job_snapshot_key(prefix: str, job_id: uuid.UUID | str) -> str:
    return f"{prefix}:snapshot:job:{job_id}"
