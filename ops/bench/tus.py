"""tus throughput: a direct minio SDK upload vs the same bytes through tus-js-client (one PATCH
stream, and ``parallelUploads: 4`` joined by a final upload) against ``/api/v1/tus/``.

Run: .venv/bin/python ops/bench/tus.py [--size-mib 1024]
Needs Node.js and npm (tus-js-client is installed from the npm registry on first use, as the tests
do). Prints MiB/s of each, the ratios to the direct upload (target >= 0.9), the API's peak RSS
(target < 150 MB) and its CPU seconds per GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import REPO, ApiServer, MiB, ProcessSampler, bench_settings, direct_upload, new_key
from upload import make_csv


TUS_JS_VERSION = "4.3.1"
SCRIPT = REPO / "tests" / "support" / "tusjs" / "upload.mjs"


def tus_js_modules() -> Path:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise SystemExit("Node.js and npm are needed: tus-js-client runs under Node")
    prefix = Path(tempfile.gettempdir()) / f"sluice-tus-js-client-{TUS_JS_VERSION}"
    if not (prefix / "node_modules" / "tus-js-client" / "package.json").exists():
        subprocess.run(
            [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(prefix), f"tus-js-client@{TUS_JS_VERSION}"],
            check=True, capture_output=True,
        )
    return prefix / "node_modules"


def through_tus(
    server: ApiServer, key: str, path: str, modules: Path, parallel: int, profile: Path | None = None
) -> tuple[float, ProcessSampler]:
    spy = None
    if profile is not None:
        # Collapsed stacks of the API process (flamegraph.pl or speedscope read them).
        spy = subprocess.Popen(
            ["py-spy", "record", "--pid", str(server.process.pid), "--subprocesses", "--idle", "--format", "raw",
             "--rate", "50", "--output", str(profile / f"api-parallel-{parallel}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
    with ProcessSampler(server.process.pid) as sampler:
        started = time.perf_counter()
        result = subprocess.run(
            ["node", str(SCRIPT), f"{server.url}/api/v1/tus/", key, path, "--parallel", str(parallel)],
            capture_output=True, text=True, check=False, env={**os.environ, "TUS_JS_MODULES": str(modules)},
        )
        elapsed = time.perf_counter() - started
    if spy is not None:
        spy.send_signal(2)
        spy.wait(60)
    outcome = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else {}
    if not outcome.get("ok"):
        raise SystemExit(f"tus upload failed: {result.stdout} {result.stderr}")
    return elapsed, sampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--profile", type=Path, help="write py-spy profiles of the API to this directory")
    args = parser.parse_args()
    modules = tus_js_modules()

    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp, bench_settings() as settings:
        path = os.path.join(tmp, "bench.csv")
        make_csv(path, args.size_mib * MiB)
        size = os.path.getsize(path)

        direct = direct_upload(settings, path)

        key = new_key(settings)
        server = ApiServer(settings)
        try:
            single, single_sampler = through_tus(server, key, path, modules, 1, args.profile)
            parallel, parallel_sampler = through_tus(server, key, path, modules, 4, args.profile)
        finally:
            server.stop()

    gib = size / 1024**3
    direct_mibs, single_mibs, parallel_mibs = (size / MiB / t for t in (direct, single, parallel))
    print(f"file: {size / MiB:.0f} MiB CSV, S3 endpoint {settings.s3_endpoint}, part size {settings.part_size // MiB} MiB")
    print(f"(a) direct minio SDK upload:          {direct_mibs:8.1f} MiB/s  ({direct:.1f} s)")
    print(f"(b) tus-js-client, one PATCH stream:  {single_mibs:8.1f} MiB/s  ({single:.1f} s)")
    print(f"(c) tus-js-client, parallelUploads 4: {parallel_mibs:8.1f} MiB/s  ({parallel:.1f} s)")
    print(f"ratio b/a:                            {single_mibs / direct_mibs:8.2f}   (target >= 0.9)")
    print(f"ratio c/a:                            {parallel_mibs / direct_mibs:8.2f}   (target >= 0.9)")
    print(f"API peak RSS during (b) / (c):        {single_sampler.peak_rss / MiB:8.1f} / {parallel_sampler.peak_rss / MiB:.1f} MiB (target < 150 MB)")
    print(f"API CPU (user+sys) per GiB (b) / (c): {single_sampler.cpu_seconds / gib:8.2f} / {parallel_sampler.cpu_seconds / gib:.2f} s")


if __name__ == "__main__":
    main()
