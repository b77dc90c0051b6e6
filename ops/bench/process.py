"""Processing throughput: a CSV stored through the API and processed by a real worker into its
dataset table, against ``psql \\copy`` of the same file into a table of the same column types.
Then (unless ``--no-gzip``) the same CSV gzip-compressed, (unless ``--xlsx-rows 0``) an 8-column
XLSX processed end to end against bare python-calamine iteration and through each XLSX reader
alone, and (unless ``--xlsx-wide-rows 0``) a 30-column XLSX end to end (streamed: peak RSS < 300 MB).

Run: .venv/bin/python ops/bench/process.py [--size-mib 1024 | --rows N] [--no-gzip] [--xlsx-rows 1000000] [--xlsx-wide-rows 1000000]
Prints rows/s of both, the ratio (target >= 0.5) and the worker's peak RSS (target < 250 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta

import asyncpg
import httpx
import xlsxwriter
from common import ApiServer, MiB, ProcessSampler, Settings, bench_settings, new_key
from python_calamine import CalamineWorkbook

from tests.support.servers import REPO, settings_env

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split(" ")


def make_csv(path: str, *, size: int | None, rows: int | None, late: int | None = None) -> int:
    """8 columns: int, uuid, quoted text with commas and quotes, email, decimal, date, boolean, free text.

    ``late``: the data row (0-based) whose amount is ``n/a``, so that column must widen to text there.
    """
    rng = random.Random(7)
    start = date(2000, 1, 1)
    written = count = 0
    with open(path, "w", newline="") as out:
        out.write("id,uid,title,email,amount,day,active,comment\n")
        while (rows is None or count < rows) and (size is None or written < size):
            block = []
            for n in range(count, count + 10_000 if rows is None else min(count + 10_000, rows)):
                title = f'Widget {n}, "{WORDS[n % 12]}" edition'.replace('"', '""')
                comment = " ".join(rng.choice(WORDS) for _ in range(4 + n % 5))
                amount = "n/a" if n == late else f"{n % 100000}.{n % 100:02d}"
                block.append(
                    f'{n},{uuid.UUID(int=rng.getrandbits(128))},"{title}",user{n}@example.com,'
                    f"{amount},{start + timedelta(days=n % 9000)},{'true' if n % 3 else 'false'},"
                    f"{comment}\n"
                )
            count += len(block)
            text = "".join(block)
            out.write(text)
            written += len(text)
    return count


def make_xlsx(path: str, rows: int) -> None:
    book = xlsxwriter.Workbook(path, {"constant_memory": True})
    sheet = book.add_worksheet("data")
    day = book.add_format({"num_format": "yyyy-mm-dd"})
    sheet.write_row(0, 0, ["id", "uid", "title", "email", "amount", "day", "active", "comment"])
    start = datetime(2000, 1, 1)
    for n in range(rows):
        r = n + 1
        sheet.write_number(r, 0, n)
        sheet.write_string(r, 1, str(uuid.UUID(int=n * 7919)))
        sheet.write_string(r, 2, f"Widget {n}, blue")
        sheet.write_string(r, 3, f"user{n}@example.com")
        sheet.write_number(r, 4, n % 1000 + 0.25)
        sheet.write_datetime(r, 5, start + timedelta(days=n % 9000), day)
        sheet.write_boolean(r, 6, n % 3 == 0)
        sheet.write_string(r, 7, WORDS[n % 12])
    book.close()


def make_wide_xlsx(path: str, rows: int, columns: int = 30) -> None:
    """What Excel users send: many columns of numbers, text, dates and flags (shared strings)."""
    book = xlsxwriter.Workbook(path, {"constant_memory": True, "strings_to_numbers": False})
    sheet = book.add_worksheet("data")
    day = book.add_format({"num_format": "yyyy-mm-dd"})
    sheet.write_row(0, 0, [f"col {c}" for c in range(columns)])
    start = datetime(2000, 1, 1)
    for n in range(rows):
        r = n + 1
        for c in range(columns):
            kind = c % 5
            if kind == 0:
                sheet.write_number(r, c, n * 31 + c)
            elif kind == 1:
                sheet.write_string(r, c, f"{WORDS[(n + c) % 12]} {n % 977}")
            elif kind == 2:
                sheet.write_number(r, c, (n % 10007) / 8)
            elif kind == 3:
                sheet.write_datetime(r, c, start + timedelta(days=(n + c) % 9000), day)
            else:
                sheet.write_boolean(r, c, (n + c) % 3 == 0)
    book.close()


def reader_rates(path: str) -> dict[str, float]:
    """Rows/s of the calamine and the streaming reader over the same workbook (windows of 1,000)."""
    from workers.parsers import XlsxLimits, open_xlsx

    rates = {}
    for name, budget in (("calamine", 1 << 40), ("streaming", 0)):
        started = time.perf_counter()
        _, windows = open_xlsx(path, window_rows=1000, limits=XlsxLimits(calamine_memory=budget, timeout_s=3600))
        count = sum(w.rows_read for w in windows)
        rates[name] = count / (time.perf_counter() - started)
    return rates


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "--processes", "1", "--threads", "1"],
            env=settings_env(settings), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(3)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def process_file(server: ApiServer, key: str, path: str, options: dict[str, object]) -> dict[str, object]:
    """Store ``path`` with PUT (curl -T), process it, wait; returns the finished job."""
    name = os.path.basename(path)
    result = subprocess.run(
        ["curl", "-sS", "--fail-with-body", "-T", path, "-H", f"Authorization: Bearer {key}",
         f"{server.url}/api/v1/files/{name}?process=false"],
        capture_output=True, text=True, check=True,
    )
    file_id = httpx.Response(200, content=result.stdout).json()["id"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        response = http.post("/api/v1/jobs", json={"file_ids": [file_id], "options": options})
        response.raise_for_status()
        job_id = response.json()["jobs"][0]["id"]
        while True:
            job = http.get(f"/api/v1/jobs/{job_id}").json()
            if job["state"] not in ("pending", "processing"):
                return job
            time.sleep(0.2)


def seconds(job: dict[str, object], since: str = "created_at") -> float:
    return (datetime.fromisoformat(str(job["finished_at"])) - datetime.fromisoformat(str(job[since]))).total_seconds()


async def column_types(settings: Settings, table: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(settings.sync_database_url)
    try:
        rows = await conn.fetch(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attname <> '_row' ORDER BY attnum",
            table,
        )
    finally:
        await conn.close()
    return [(r[0], r[1]) for r in rows]


def psql_copy(settings: Settings, path: str, columns: list[tuple[str, str]]) -> float:
    dsn = settings.sync_database_url
    body = ", ".join(f'"{name}" {type_}' for name, type_ in columns)
    subprocess.run(["psql", dsn, "-qc", f"DROP TABLE IF EXISTS bench_copy; CREATE TABLE bench_copy ({body})"], check=True)
    started = time.perf_counter()
    subprocess.run(["psql", dsn, "-qc", f"\\copy bench_copy FROM '{path}' WITH (FORMAT csv, HEADER true)"], check=True)
    return time.perf_counter() - started


def calamine_rows(path: str) -> tuple[int, float]:
    started = time.perf_counter()
    count = sum(1 for _ in CalamineWorkbook.from_path(path).get_sheet_by_index(0).iter_rows())
    return count - 1, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rows", type=int, help="generate this many rows instead of --size-mib")
    parser.add_argument("--xlsx-rows", type=int, default=1_000_000)
    parser.add_argument("--xlsx-wide-rows", type=int, default=1_000_000, help="rows of the 30-column workbook (0: skip)")
    parser.add_argument("--window-rows", type=int)
    parser.add_argument("--max-concurrency", type=int)
    parser.add_argument("--gzip", action=argparse.BooleanOptionalAction, default=True,
                        help="also process the CSV gzip-compressed and compare rows/s")
    parser.add_argument("--late-widening", action=argparse.BooleanOptionalAction, default=True,
                        help="also process the same CSV with one amount of 'n/a' in its last 1%% of rows "
                             "(the column widens numeric -> text there) and compare rows/s")
    args = parser.parse_args()
    options = {k: v for k, v in (("window_rows", args.window_rows), ("max_concurrency", args.max_concurrency)) if v}

    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp, bench_settings(worker_metrics_port=0) as settings:
        csv_path = os.path.join(tmp, "bench.csv")
        rows = make_csv(csv_path, size=None if args.rows else args.size_mib * MiB, rows=args.rows)
        size = os.path.getsize(csv_path)
        key = new_key(settings)
        server = ApiServer(settings)
        worker = Worker(settings)
        try:
            with ProcessSampler(worker.process.pid) as sampler:
                job = process_file(server, key, csv_path, options)
            assert job["state"] == "completed", job
            assert job["rows_ok"] == rows, job
            elapsed = seconds(job)
            columns = asyncio.run(column_types(settings, str(job["dataset_table"])))
            copy_elapsed = psql_copy(settings, csv_path, columns)
            ours, theirs = rows / elapsed, rows / copy_elapsed
            print(f"CSV: {rows:,} rows, {size / MiB:,.0f} MiB, columns {', '.join(t for _, t in columns)}")
            print(f"  options:          {job['options']}")
            print(f"  sluice (stored -> table): {elapsed:8.2f} s  {ours:12,.0f} rows/s")
            print(f"  of which queued:          {elapsed - seconds(job, 'started_at'):8.2f} s")
            print(f"  psql \\copy:               {copy_elapsed:8.2f} s  {theirs:12,.0f} rows/s")
            print(f"  ratio:            {ours / theirs:.2f}  (target >= 0.5)")
            print(f"  worker peak RSS:  {sampler.peak_rss / 1e6:.0f} MB (process tree)  (target < 250 MB)")
            print(f"  worker CPU:       {sampler.cpu_seconds:.1f} s")
            if args.late_widening:
                late_path = os.path.join(tmp, "late.csv")
                late_row = rows - max(rows // 200, 1)
                assert make_csv(late_path, size=None, rows=rows, late=late_row) == rows
                late_job = process_file(server, key, late_path, options)
                os.unlink(late_path)
                assert late_job["state"] == "completed" and late_job["rows_ok"] == rows, late_job
                late_rate = rows / seconds(late_job)
                print(f"LATE WIDENING: the same rows, amount 'n/a' at row {late_row + 2:,} (last 1 %)")
                print(f"  widenings:                {late_job['widenings']}")
                print(f"  sluice (stored -> table): {seconds(late_job):8.2f} s  {late_rate:12,.0f} rows/s")
                print(f"  late / plain rows/s:      {late_rate / ours:.2f}")
                started = time.perf_counter()
                subprocess.run(["psql", settings.sync_database_url, "-qc",
                                "ALTER TABLE bench_copy ALTER COLUMN amount TYPE text USING amount::text"], check=True)
                print(f"  for scale, that ALTER alone on the psql table of every row: {time.perf_counter() - started:.2f} s")
            if args.gzip:
                subprocess.run(["gzip", "-6", csv_path], check=True)
                gz_path = csv_path + ".gz"
                gz_job = process_file(server, key, gz_path, options)
                assert gz_job["state"] == "completed" and gz_job["rows_ok"] == rows, gz_job
                gz_rate = rows / seconds(gz_job)
                print(f"CSV.GZ: the same file gzip -6, {os.path.getsize(gz_path) / MiB:,.0f} MiB")
                print(f"  sluice (stored -> table): {seconds(gz_job):8.2f} s  {gz_rate:12,.0f} rows/s")
                print(f"  gzip / plain rows/s:      {gz_rate / ours:.2f}")
                os.unlink(gz_path)
            else:
                os.unlink(csv_path)

            if args.xlsx_rows:
                xlsx_path = os.path.join(tmp, "bench.xlsx")
                make_xlsx(xlsx_path, args.xlsx_rows)
                xsize = os.path.getsize(xlsx_path)
                with ProcessSampler(worker.process.pid) as xsampler:
                    xjob = process_file(server, key, xlsx_path, options)
                count, bare = calamine_rows(xlsx_path)
                print(f"XLSX: {args.xlsx_rows:,} rows x 8 columns, {xsize / MiB:,.0f} MiB")
                if xjob["state"] != "completed":
                    print(f"  sluice: job {xjob['state']}: {xjob['error']}")
                else:
                    xelapsed = seconds(xjob)
                    print(f"  sluice (stored -> table): {xelapsed:8.2f} s  {xjob['rows_ok'] / xelapsed:12,.0f} rows/s")
                print(f"  bare calamine iteration:  {bare:8.2f} s  {count / bare:12,.0f} rows/s")
                print(f"  worker peak RSS:  {xsampler.peak_rss / 1e6:.0f} MB (process tree)")
                rates = reader_rates(xlsx_path)
                print(f"  parser alone, calamine:   {rates['calamine']:12,.0f} rows/s")
                print(f"  parser alone, streaming:  {rates['streaming']:12,.0f} rows/s")
                os.unlink(xlsx_path)

            if args.xlsx_wide_rows:
                wide_path = os.path.join(tmp, "wide.xlsx")
                make_wide_xlsx(wide_path, args.xlsx_wide_rows)
                with ProcessSampler(worker.process.pid) as wsampler:
                    wjob = process_file(server, key, wide_path, options)
                print(f"XLSX: {args.xlsx_wide_rows:,} rows x 30 columns, {os.path.getsize(wide_path) / MiB:,.0f} MiB")
                if wjob["state"] != "completed":
                    print(f"  sluice: job {wjob['state']}: {wjob['error']}")
                else:
                    welapsed = seconds(wjob)
                    print(f"  sluice (stored -> table): {welapsed:8.2f} s  {wjob['rows_ok'] / welapsed:12,.0f} rows/s")
                print(f"  worker peak RSS:  {wsampler.peak_rss / 1e6:.0f} MB (process tree)  (target < 300 MB)")
            print("Figures from one run on a shared machine.")
        finally:
            worker.stop()
            server.stop()


if __name__ == "__main__":
    main()
