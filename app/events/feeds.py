"""What a stream has sent so far, and which incoming events are new: pure logic, no I/O.

A feed starts from snapshots (the latest published event of each channel, or the database row
when there is none), then takes live events, dropping any that are not newer than what it holds.
Event ids are the publisher's ``seq`` (one counter per channel); a batch's id is the sum of its
jobs' seqs, which grows with every event of any of its jobs.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from app.events.schemas import BatchEvent
from workers.contracts import JobEvent, UploadEvent, snapshot_key

log = logging.getLogger("sluice.events")

JOB_TERMINAL = frozenset({"completed", "failed", "cancelled", "timed_out"})
UPLOAD_TERMINAL = frozenset({"completed", "aborted", "expired", "failed"})

E = TypeVar("E", JobEvent, UploadEvent)


@dataclass(frozen=True, slots=True)
class Frame:
    """One event to send: its SSE ``event`` name, its ``id`` and its JSON ``data``."""

    event: str
    id: int
    data: bytes


def whole(event: JobEvent | UploadEvent) -> dict[str, Any]:
    """Every field, defaults included: the contracts omit them, clients should not have to know them."""
    return msgspec.structs.asdict(event)


_DECODERS = {kind: msgspec.json.Decoder(kind) for kind in (JobEvent, UploadEvent)}


@functools.lru_cache(maxsize=1024)
def parse(kind: type[E], payload: bytes) -> tuple[E, bytes] | None:
    """The event in ``payload`` and its JSON with every field, ``None`` when it does not decode.

    Every stream of a channel is handed the same payload, so this runs once per event per
    process, not once per watcher.
    """
    try:
        event = _DECODERS[kind].decode(payload)
    except msgspec.DecodeError:
        log.warning("dropped an event that does not decode", extra={"payload": payload[:200]})
        return None
    return event, msgspec.json.encode(whole(event))


class Feed(Protocol):
    channels: list[str]
    keys: list[str]

    @property
    def seq(self) -> int: ...

    @property
    def state(self) -> str: ...

    @property
    def terminal(self) -> bool: ...

    def start(self, snapshots: list[bytes | None]) -> None:
        """Take the current state from the snapshot keys (in ``keys`` order)."""

    def data(self) -> bytes:
        """The whole current state as JSON."""

    def apply(self, payload: bytes) -> list[Frame]:
        """A live event: the frames to send, none when it is not newer than the state held."""

    def resync(self, snapshots: list[bytes | None]) -> list[Frame]:
        """Snapshot keys read again: frames for anything newer that pub/sub did not deliver."""


class ChannelFeed(Generic[E]):
    """One job or one upload: one channel, its snapshot key and its database row."""

    def __init__(self, channel: str, row: E, terminal_states: frozenset[str]) -> None:
        self.channels = [channel]
        self.keys = [snapshot_key(channel)]
        self.row = row
        self.current = row
        self._data = b""
        self._kind = type(row)
        self._terminal_states = terminal_states

    @property
    def seq(self) -> int:
        return self.current.seq

    @property
    def state(self) -> str:
        return self.current.state

    @property
    def terminal(self) -> bool:
        return self.current.state in self._terminal_states

    def start(self, snapshots: list[bytes | None]) -> None:
        parsed = parse(self._kind, snapshots[0]) if snapshots[0] else None
        published = parsed[0] if parsed else None
        if self.row.state in self._terminal_states and (
            published is None or published.state not in self._terminal_states
        ):
            # The row has ended but its terminal event was never published (or has expired):
            # a new id, one past the last published, so a client that saw that one still gets the end.
            self.current = msgspec.structs.replace(self.row, seq=(published.seq if published else 0) + 1)
        elif parsed:
            self.current, self._data = parsed
            return
        else:
            self.current = self.row
        self._data = msgspec.json.encode(whole(self.current))

    def data(self) -> bytes:
        return self._data

    def apply(self, payload: bytes) -> list[Frame]:
        parsed = parse(self._kind, payload)
        if parsed is None or parsed[0].seq <= self.current.seq or self.terminal:
            return []
        self.current, self._data = parsed
        return [Frame(self.current.type, self.current.seq, self._data)]

    def resync(self, snapshots: list[bytes | None]) -> list[Frame]:
        return self.apply(snapshots[0]) if snapshots[0] else []


class BatchFeed:
    """The jobs of one batch, aggregated into one stream."""

    def __init__(self, batch_id: str, jobs: list[ChannelFeed[JobEvent]]) -> None:
        self.batch_id = batch_id
        self.jobs = jobs
        self.channels = [c for job in jobs for c in job.channels]
        self.keys = [k for job in jobs for k in job.keys]
        self._by_id = {job.row.job_id: job for job in jobs}

    @property
    def seq(self) -> int:
        return sum(job.seq for job in self.jobs)

    @property
    def terminal(self) -> bool:
        return all(job.terminal for job in self.jobs)

    @property
    def state(self) -> str:
        states = Counter(job.state for job in self.jobs)
        if not self.terminal:
            return "pending" if states["pending"] == len(self.jobs) else "processing"
        if states["completed"] == len(self.jobs):
            return "completed"
        return "failed" if states["failed"] or states["timed_out"] else "cancelled"

    def start(self, snapshots: list[bytes | None]) -> None:
        for job, snapshot in zip(self.jobs, snapshots, strict=True):
            job.start([snapshot])

    def data(self) -> bytes:
        type_ = self.state if self.terminal else "snapshot"
        return msgspec.json.encode(self._event(type_, jobs=[whole(job.current) for job in self.jobs]))

    def apply(self, payload: bytes) -> list[Frame]:
        parsed = parse(JobEvent, payload)
        job = self._by_id.get(parsed[0].job_id) if parsed else None
        if job is None or not job.apply(payload):
            return []
        event = self._event(self.state if self.terminal else "progress", job=whole(job.current))
        return [Frame(event.type, event.seq, msgspec.json.encode(event))]

    def resync(self, snapshots: list[bytes | None]) -> list[Frame]:
        return [frame for snapshot in snapshots if snapshot for frame in self.apply(snapshot)]

    def _event(
        self, type_: str, *, job: dict[str, Any] | None = None, jobs: list[dict[str, Any]] | None = None
    ) -> BatchEvent:
        current = [j.current for j in self.jobs]
        weights = [e.bytes_total for e in current]
        done = [1.0 if j.terminal else j.current.progress / 100 for j in self.jobs]
        total_weight = sum(weights)
        if total_weight:
            progress = 100 * sum(w * d for w, d in zip(weights, done, strict=True)) / total_weight
        else:
            progress = 100 * sum(done) / len(done)
        running = [e for e in current if e.state == "processing"]
        etas = [e.eta_s for e in running if e.eta_s is not None]
        return BatchEvent(
            type=type_,
            batch_id=self.batch_id,
            state=self.state,
            jobs_total=len(current),
            jobs_by_state=dict(Counter(e.state for e in current)),
            rows_ok=sum(e.rows_ok for e in current),
            rows_rejected=sum(e.rows_rejected for e in current),
            bytes_read=sum(e.bytes_read for e in current),
            bytes_total=total_weight,
            progress=round(progress, 2),
            rate=sum(e.rate for e in running),
            eta_s=max(etas) if etas else None,
            job=job,
            jobs=jobs or [],
            seq=self.seq,
        )
