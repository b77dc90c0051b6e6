"""Upload throughput: a direct minio SDK upload vs the same bytes through ``PUT /api/v1/files``.

Run: .venv/bin/python ops/bench/upload.py [--size-mib 1024]
Prints MiB/s of both, the ratio (target >= 0.9), the API's peak RSS (target < 150 MB) and its
CPU seconds per GiB uploaded (user and kernel apart).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time

from common import ApiServer, MiB, ProcessSampler, bench_settings, direct_upload, new_key



def make_csv(path: str, size: int) -> None:
    """A CSV of ``size`` bytes built from 1 MiB blocks that all differ."""
    line = "{n},{n:08x}-5f2c-4d3a-9e1b-{n:012x},\"Widget {n}, blue\",user{n}@example.com,{n}.25,2024-05-17,true\n"
    with open(path, "w", newline="") as out:
        out.write("id,uid,title,email,amount,day,flag\n")
        written, n = 0, 0
        while written < size:
            block = "".join(line.format(n=n + i) for i in range(10_000))
            n += 10_000
            block = block[: size - written]
            out.write(block)
            written += len(block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    size = args.size_mib * MiB

    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp, bench_settings() as settings:
        path = os.path.join(tmp, "bench.csv")
        make_csv(path, size)
        size = os.path.getsize(path)

        direct = direct_upload(settings, path)

        key = new_key(settings)
        server = ApiServer(settings)
        try:
            with ProcessSampler(server.process.pid) as sampler:
                started = time.perf_counter()
                result = subprocess.run(
                    ["curl", "-sS", "--fail-with-body", "-T", path, "-H", f"Authorization: Bearer {key}",
                     "-o", os.devnull, "-w", "%{http_code}", f"{server.url}/api/v1/files/"],
                    capture_output=True, text=True, check=False,
                )
                through_api = time.perf_counter() - started
        finally:
            server.stop()
        if result.stdout.strip() != "201":
            raise SystemExit(f"API upload failed: {result.stdout} {result.stderr}")

    direct_mibs = size / MiB / direct
    api_mibs = size / MiB / through_api
    print(f"file: {size / MiB:.0f} MiB CSV, S3 endpoint {settings.s3_endpoint}, part size {settings.part_size // MiB} MiB")
    print(f"(a) direct minio SDK upload:   {direct_mibs:8.1f} MiB/s  ({direct:.1f} s)")
    print(f"(b) PUT /api/v1/files (curl):  {api_mibs:8.1f} MiB/s  ({through_api:.1f} s)")
    print(f"ratio b/a:                     {api_mibs / direct_mibs:8.2f}   (target >= 0.9)")
    print(f"API peak RSS during (b):       {sampler.peak_rss / MiB:8.1f} MiB (target < 150 MB)")
    gib = size / 1024**3
    print(
        f"API CPU (user+sys) per GiB:    {sampler.cpu_seconds / gib:8.2f} s "
        f"(user {sampler.user_seconds / gib:.2f}, sys {sampler.system_seconds / gib:.2f})"
    )


if __name__ == "__main__":
    main()
