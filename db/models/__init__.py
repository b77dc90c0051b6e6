"""SQLAlchemy models; importing this package registers every table on ``Base.metadata``."""

from db.models.base import Base
from db.models.files import File, FileKind, FileStatus
from db.models.jobs import TERMINAL_JOB_STATES, Job, JobReject, JobState, JobWindow
from db.models.keys import ApiKey
from db.models.metrics import HourlyMetrics
from db.models.quotas import OwnerQuota
from db.models.uploads import SessionState, UploadChunk, UploadSession

__all__ = [
    "TERMINAL_JOB_STATES",
    "ApiKey",
    "Base",
    "File",
    "FileKind",
    "FileStatus",
    "HourlyMetrics",
    "Job",
    "JobReject",
    "JobState",
    "JobWindow",
    "OwnerQuota",
    "SessionState",
    "UploadChunk",
    "UploadSession",
]
