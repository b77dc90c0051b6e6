"""``sluice upload FILE...``: progress bars while files upload, a summary table at the end.

Files that get a processing job are followed to the job's end with a second bar (rows, rate, ETA),
then the table name and row counts are printed; ``--no-wait`` skips that.

Exit status: 0 when every file was stored (and processed, when followed), 1 when any failed, 2 for bad arguments, 130 when
interrupted (run the same command again to resume chunked uploads).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from app.client.events import JobResult, follow_job
from app.client.resume import ResumeStore, cache_dir
from app.client.upload import MiB, Options, Outcome, Uploader

DEFAULT_URL = "http://127.0.0.1:8000"
_UNITS = {"": 1, "k": 1024, "m": MiB, "g": 1024 * MiB}
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from ``8388608``, ``8M``, ``8MiB`` or ``1G`` (binary units)."""
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write e.g. 8MiB, 64M or 5242880")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--url", default=os.environ.get("SLUICE_URL", DEFAULT_URL), help="API base URL ($SLUICE_URL)")
    parser.add_argument("--key", default=os.environ.get("SLUICE_KEY"), help="API key ($SLUICE_KEY)")
    parser.add_argument("--chunk-size", type=parse_size, help="chunk size of chunked uploads (server default 8MiB)")
    parser.add_argument("--parallel", type=int, default=3, help="chunks in flight per file (3)")
    parser.add_argument("--no-process", dest="process", action="store_false", help="store only; no processing job")
    parser.add_argument(
        "--threshold", type=parse_size, default=64 * MiB, help="files above this go as chunked sessions (64MiB)"
    )
    parser.add_argument(
        "--no-wait", dest="wait", action="store_false", help="do not follow processing; print the job ids and exit"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="send the whole file's SHA-256 too; the server reads the assembled file back to check it",
    )


def run(args: argparse.Namespace) -> int:
    console = Console()
    if not args.key:
        console.print("[red]give an API key with --key or set SLUICE_KEY[/red]")
        return 2
    if args.parallel < 1:
        console.print("[red]--parallel must be at least 1[/red]")
        return 2
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        console.print(f"[red]not a readable file: {', '.join(missing)}[/red]")
        return 2
    options = Options(
        chunk_size=args.chunk_size,
        parallel=args.parallel,
        process=args.process,
        threshold=args.threshold,
        verify=args.verify,
    )
    try:
        outcomes, jobs = asyncio.run(_upload_all(args.url, args.key, args.files, options, console, args.wait))
    except KeyboardInterrupt:
        console.print(f"interrupted: run the same command again to resume (state in {cache_dir()})")
        return 130
    console.print(_summary(outcomes))
    return 0 if all(o.stored for o in outcomes) and all(j.state == "completed" for j in jobs) else 1


async def _upload_all(
    url: str, key: str, files: list[Path], options: Options, console: Console, wait: bool
) -> tuple[list[Outcome], list[JobResult]]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TaskProgressColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    limits = httpx.Limits(max_connections=options.parallel + 2)
    timeout = httpx.Timeout(300.0, connect=10.0)
    headers = {"Authorization": f"Bearer {key}"}
    # Event streams get their own client: they hold a connection each for as long as a job runs.
    async with (
        httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, limits=limits) as http,
        httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout) as events,
    ):
        uploader = Uploader(http, options, ResumeStore(url), progress, console)
        with progress:
            outcomes = []
            following: list[tuple[str, asyncio.Task[JobResult]]] = []
            for path in files:
                outcome = await uploader.upload(path)
                if outcome.mode == "chunked":
                    console.print(
                        f"{path.name}: sent {outcome.chunks_sent} chunks, skipped {outcome.chunks_skipped} "
                        "already on the server"
                    )
                if outcome.stored and outcome.job_id:
                    if wait:
                        follow = follow_job(events, outcome.job_id, progress, label=f"{path.name} processing")
                        following.append((path.name, asyncio.create_task(follow)))
                    else:
                        console.print(f"{path.name}: processing as job {outcome.job_id}")
                outcomes.append(outcome)
            jobs = []
            for name, task in following:
                jobs.append(await task)
                console.print(f"{name}: {jobs[-1].describe()}")
            return outcomes, jobs


def _summary(outcomes: list[Outcome]) -> Table:
    table = Table(title="sluice upload")
    for column in ("file", "size", "mode", "status", "chunks sent / skipped", "time", "file id / reason"):
        table.add_column(column)
    for o in outcomes:
        chunks = f"{o.chunks_sent} / {o.chunks_skipped}" if o.mode == "chunked" else "-"
        status = "[green]stored[/green]" if o.stored else f"[red]{o.status}[/red]"
        table.add_row(
            o.path.name, _human(o.size), o.mode, status, chunks, f"{o.seconds:.1f} s",
            o.file_id if o.stored else (o.detail or ""),
        )
    return table


def _human(size: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size:.2f} GiB"
