"""Following a job's progress stream from the client: a progress bar until the job ends."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
from httpx_sse import SSEError, aconnect_sse
from rich.progress import Progress

TERMINAL = frozenset({"completed", "failed", "cancelled", "timed_out"})
RECONNECTS = 5
"""Times a dropped stream is reopened (with Last-Event-ID) before giving up."""


@dataclass(slots=True)
class JobResult:
    """How a followed job ended; ``state`` is ``unknown`` when its stream could not be followed."""

    job_id: str
    state: str
    rows_ok: int = 0
    rows_rejected: int = 0
    dataset_table: str | None = None
    error: str | None = None

    def describe(self) -> str:
        if self.state == "unknown":
            return f"could not follow processing job {self.job_id}: {self.error or 'its progress stream ended early'}"
        if self.state == "completed":
            return f"{self.rows_ok:,} rows in table {self.dataset_table} ({self.rows_rejected:,} rejected)"
        reason = f": {self.error}" if self.error else ""
        return f"processing {self.state} after {self.rows_ok:,} rows{reason}"


async def follow_job(
    http: httpx.AsyncClient, job_id: str, progress: Progress, *, label: str = "processing", reconnects: int = RECONNECTS
) -> JobResult:
    """Follow ``GET /api/v1/jobs/{job_id}/events`` to the job's end, driving one bar of ``progress``
    (bytes parsed of the file; rows, rows/s and ETA in its description).

    A dropped stream is reopened with ``Last-Event-ID``, so nothing is repeated and the end is never missed.
    """
    task = progress.add_task(f"{label}: waiting", total=None)
    result = JobResult(job_id=job_id, state="unknown")
    last_id: str | None = None
    failures = 0
    try:
        while failures <= reconnects:
            headers = {"Last-Event-ID": last_id} if last_id is not None else {}
            try:
                async with aconnect_sse(http, "GET", f"/api/v1/jobs/{job_id}/events", headers=headers) as source:
                    if source.response.status_code == 204:
                        return result
                    if source.response.status_code != 200:
                        await source.response.aread()
                        result.error = _detail(source.response)
                        return result
                    async for event in source.aiter_sse():
                        if not event.data:
                            # httpx-sse turns a heartbeat comment into an empty event once an id was seen.
                            continue
                        last_id = event.id or last_id
                        failures = 0
                        state = msgspec.json.decode(event.data)
                        _show(progress, task, label, state)
                        result = _result(job_id, state)
                        if event.event in TERMINAL:
                            return result
            except (httpx.TransportError, SSEError) as exc:
                result.error = f"the progress stream broke: {exc or type(exc).__name__}"
            failures += 1
            await asyncio.sleep(min(0.5 * 2**failures, 10.0))
        return result
    finally:
        progress.update(task, visible=False)


def _show(progress: Progress, task: Any, label: str, state: dict[str, Any]) -> None:
    eta = state.get("eta_s")
    parts = [f"{label}: {state['state']}", f"{state.get('rows_ok', 0):,} rows"]
    if state.get("rate"):
        parts.append(f"{state['rate']:,.0f} rows/s")
    if eta is not None and state["state"] == "processing":
        parts.append(f"ETA {eta:,.0f} s")
    progress.update(
        task,
        description=", ".join(parts),
        total=state.get("bytes_total") or None,
        completed=state.get("bytes_read", 0),
    )


def _result(job_id: str, state: dict[str, Any]) -> JobResult:
    return JobResult(
        job_id=job_id,
        state=state["state"],
        rows_ok=state.get("rows_ok", 0),
        rows_rejected=state.get("rows_rejected", 0),
        dataset_table=state.get("dataset_table"),
        error=state.get("error"),
    )


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail") or response.text)
    except ValueError:
        return response.text or response.reason_phrase
