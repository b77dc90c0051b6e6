"""Which events a stream forwards, drops or synthesises: the feeds' pure logic."""

from __future__ import annotations

import msgspec
import pytest

from app.events.feeds import JOB_TERMINAL, BatchFeed, ChannelFeed
from db.settings import Settings
from workers.contracts import JobEvent

CHANNEL = "test:events:job:1"


def job(state: str = "processing", seq: int = 0, type_: str | None = None, job_id: str = "1", **fields: object) -> JobEvent:
    return JobEvent(
        type=type_ or state, job_id=job_id, batch_id="b", file_id="f", state=state, seq=seq, **fields  # type: ignore[arg-type]
    )


def raw(event: JobEvent) -> bytes:
    return msgspec.json.encode(event)


def test_live_events_not_newer_than_the_snapshot_are_dropped() -> None:
    feed = ChannelFeed(CHANNEL, job("pending", type_="state"), JOB_TERMINAL)
    feed.start([raw(job(seq=5, type_="progress", rows_ok=50))])
    assert feed.seq == 5
    assert feed.apply(raw(job(seq=4, type_="progress"))) == []
    assert feed.apply(raw(job(seq=5, type_="progress"))) == []
    frames = feed.apply(raw(job(seq=6, type_="progress", rows_ok=60)))
    assert [(f.event, f.id) for f in frames] == [("progress", 6)]
    assert msgspec.json.decode(frames[0].data)["rows_ok"] == 60
    assert feed.apply(raw(job("completed", seq=7))) and feed.terminal
    assert feed.apply(raw(job("completed", seq=8))) == [], "nothing after the terminal event"


def test_every_field_is_sent_even_at_its_default() -> None:
    feed = ChannelFeed(CHANNEL, job("pending", type_="state"), JOB_TERMINAL)
    feed.start([None])
    assert msgspec.json.decode(feed.data()) | {"rows_ok": 0, "error": None, "seq": 0} == msgspec.json.decode(feed.data())


def test_a_finished_row_ends_a_stale_snapshot_with_a_new_id() -> None:
    feed = ChannelFeed(CHANNEL, job("failed", error="boom"), JOB_TERMINAL)
    feed.start([raw(job(seq=3, type_="progress"))])
    assert (feed.terminal, feed.seq, feed.state) == (True, 4, "failed")
    feed.start([None])
    assert (feed.terminal, feed.seq) == (True, 1)


def test_undecodable_events_are_dropped() -> None:
    feed = ChannelFeed(CHANNEL, job("pending", type_="state"), JOB_TERMINAL)
    feed.start([None])
    assert feed.apply(b"not json") == []
    assert feed.resync([b'{"seq": 1}']) == []


def test_batch_ids_grow_with_any_job_and_the_end_comes_once_all_ended() -> None:
    jobs = [ChannelFeed(f"c{i}", job("pending", type_="state", job_id=str(i), bytes_total=100 * i), JOB_TERMINAL) for i in (1, 3)]
    batch = BatchFeed("b", jobs)
    batch.start([None, None])
    assert (batch.seq, batch.state) == (0, "pending")

    frames = batch.apply(raw(job(seq=1, job_id="1", type_="progress", progress=50.0, bytes_total=100)))
    event = msgspec.json.decode(frames[0].data)
    assert (frames[0].event, frames[0].id, event["state"], event["progress"]) == ("progress", 1, "processing", 12.5)
    assert event["job"]["job_id"] == "1"

    assert batch.apply(raw(job(seq=1, job_id="1"))) == [], "a duplicate of job 1's event"
    assert batch.apply(raw(job(seq=9, job_id="unknown"))) == [], "not a job of this batch"

    assert batch.apply(raw(job("completed", seq=2, job_id="1")))[0].event == "progress"
    last = batch.apply(raw(job("timed_out", seq=1, job_id="3")))
    assert [(f.event, f.id) for f in last] == [("failed", 3)]
    assert batch.terminal


def test_batch_of_only_cancelled_and_completed_jobs_is_cancelled() -> None:
    jobs = [ChannelFeed(f"c{i}", job(state, job_id=str(i)), JOB_TERMINAL) for i, state in enumerate(("completed", "cancelled"))]
    batch = BatchFeed("b", jobs)
    batch.start([None, None])
    assert (batch.terminal, batch.state) == (True, "cancelled")


def test_a_heartbeat_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="SLUICE_HEARTBEAT"):
        Settings(heartbeat=0)
