"""Runs Locust headless against a Sluice API on this machine, samples the API's resident memory the
whole time, and prints requests/s, p50/p95/p99 latency and errors per route, and the API's peak RSS.

    .venv/bin/python ops/load/report.py --host http://127.0.0.1:8000 --users 50 --time 5m

ops/load/run is the usual way in (it finds the stack's key); SLUICE_KEY must be set.
"""

from __future__ import annotations

import argparse
import csv
import ipaddress
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
MiB = 1024 * 1024


def loopback(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (socket.gaierror, ValueError):
        return False


def api_pid(port: int) -> int:
    """The process listening on ``port`` (the API of ops/stack)."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return conn.pid
    raise SystemExit(f"no process listens on port {port}: start the stack first (ops/stack)")


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.every = every
        self.peak = self.start_rss = self.process.memory_info().rss
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.NoSuchProcess:
                return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("SLUICE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--spawn-rate", type=float, default=5.0)
    parser.add_argument("--time", default="5m", help="run time, Locust's syntax (30s, 5m)")
    args = parser.parse_args()

    url = urllib.parse.urlsplit(args.host)
    if not url.hostname or not loopback(url.hostname):
        raise SystemExit(f"{args.host} is not on this machine: the load test runs against loopback only")
    if not 1 <= args.users <= 500:
        raise SystemExit("--users must be 1 to 500")
    if not os.environ.get("SLUICE_KEY"):
        raise SystemExit("set SLUICE_KEY (ops/load/run reads the stack's development key)")

    sampler = RssSampler(api_pid(url.port or 80))
    sampler.start()
    with tempfile.TemporaryDirectory(prefix="sluice-load-") as tmp:
        prefix = f"{tmp}/stats"
        argv = [
            sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless", "--only-summary",
            "--host", args.host, "--users", str(args.users), "--spawn-rate", str(args.spawn_rate),
            "--run-time", args.time, "--stop-timeout", "30", "--csv", prefix, "--loglevel", "WARNING",
        ]
        print(f"load test: {args.users} users for {args.time} against {args.host} (API pid {sampler.process.pid})", flush=True)
        started = time.monotonic()
        locust = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        code = locust.returncode
        if code not in (0, 1):  # 1: some requests failed, reported below
            print(locust.stderr[-3000:], file=sys.stderr)
            return code
        elapsed = time.monotonic() - started
        sampler.stopped.set()
        rows = list(csv.DictReader(open(f"{prefix}_stats.csv")))
        failures = list(csv.DictReader(open(f"{prefix}_failures.csv")))

    print(f"\n{'route':<44} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}")
    for row in rows:
        name = f"SSE {row['Name']}" if row["Type"] == "SSE" else row["Name"]
        print(
            f"{name[:44]:<44} {row['Request Count']:>8} {row['Failure Count']:>6} {float(row['Requests/s']):>7.1f}"
            f" {row['50%']:>7} {row['95%']:>7} {row['99%']:>7}"
        )
    total = next(row for row in rows if row["Name"] == "Aggregated")
    requests, errors = int(total["Request Count"]), int(total["Failure Count"])
    print(
        f"\ntotal: {requests} requests in {elapsed:.0f} s, {float(total['Requests/s']):.1f} req/s,"
        f" errors {errors} ({100 * errors / max(requests, 1):.2f} %)"
    )
    print(f"API RSS: {sampler.start_rss / MiB:.0f} MiB at the start, peak {sampler.peak / MiB:.0f} MiB")
    for failure in failures:
        print(f"error x{failure['Occurrences']}: {failure['Method']} {failure['Name']}: {failure['Error'][:300]}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
