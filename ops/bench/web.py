"""The web app: a CSV uploaded through the page (Uppy over tus, in headless Chromium) vs the same
file sent with ``curl -T`` to ``PUT /api/v1/files`` on the same API, and the built bundle's size.

Run: .venv/bin/python ops/bench/web.py [--size-mib 1024]
Needs the built app (``cd web && npm ci && npm run build``, or any ``ops/test`` / ``ops/stack`` run)
and Chromium at /usr/bin/chromium (``apt-get install chromium``; ``SLUICE_BENCH_CHROMIUM`` overrides).
Prints MiB/s of both, the ratio page/curl (target >= 0.8), the API's peak RSS and CPU seconds per GiB
and the client's CPU seconds per GiB during each; also the same page sending the file as one plain
``fetch`` PUT (Chromium without Uppy/tus, to tell the two apart); and the gzip size of the first
page and of each lazily loaded page.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from common import REPO, ApiServer, MiB, ProcessSampler, bench_settings, new_key
from playwright.async_api import Browser, async_playwright
from upload import make_csv

from tests.support.browser import CHROMIUM_ARGS

CHROMIUM = os.environ.get("SLUICE_BENCH_CHROMIUM", "/usr/bin/chromium")
GZIP_LEVEL = 6
"""zlib's default, what a web server's on-the-fly gzip usually uses."""
STATIC_IMPORT = re.compile(r"""(?:\bfrom|\bimport)\s*["'`]\./([\w.-]+\.js)["'`]""")
LAZY_IMPORT = re.compile(r"""import\(\s*["'`]\./([\w.-]+\.js)["'`]\s*\)\s*,\s*__vite__mapDeps\(\[([\d,\s]*)\]\)""")
MAP_DEPS = re.compile(r"__vite__mapDeps=.*?m\.f=\[([^\]]*)\]")


@dataclass
class Run:
    seconds: float
    api: ProcessSampler
    client_cpu: dict[str, float]
    """CPU seconds (user+sys) of the client by process type: Chromium's processes, or curl."""


def gz(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), GZIP_LEVEL))


def static_closure(assets: Path, names: list[str]) -> list[str]:
    """``names`` and every chunk they import statically, transitively (Vite's ``from"./x.js"``)."""
    seen: list[str] = []
    todo = list(names)
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.append(name)
        if name.endswith(".js"):
            todo += STATIC_IMPORT.findall((assets / name).read_text(errors="replace"))
    return seen


def bundle_sizes(dist: Path) -> tuple[list[str], dict[str, list[str]]]:
    """The first page's files (index.html, its scripts and styles, their static imports) and, per
    lazy chunk the entry imports, the files loading it adds (its CSS from Vite's preload map too)."""
    html = (dist / "index.html").read_text()
    assets = dist / "assets"
    direct = [
        m.split("/assets/", 1)[1]
        for m in re.findall(r"""<(?:script|link)\b[^>]*?(?:src|href)=["']([^"']+)["']""", html)
        if "/assets/" in m
    ]
    first = static_closure(assets, direct)
    lazy: dict[str, list[str]] = {}
    for entry in [n for n in first if n.endswith(".js")]:
        text = (assets / entry).read_text(errors="replace")
        deps_match = MAP_DEPS.search(text)
        deps = [d.strip().strip("\"'`").removeprefix("assets/") for d in deps_match.group(1).split(",")] if deps_match else []
        for chunk, indices in LAZY_IMPORT.findall(text):
            files = [deps[int(i)] for i in indices.split(",") if i.strip() and int(i) < len(deps)]
            closure = static_closure(assets, [chunk, *files])
            lazy[chunk.split("-", 1)[0]] = [n for n in closure if n not in first]
    return ["index.html", *first], lazy


def total_gz(dist: Path, names: list[str]) -> tuple[int, int]:
    paths = [dist / n if n == "index.html" else dist / "assets" / n for n in names]
    return sum(p.stat().st_size for p in paths), sum(gz(p) for p in paths)


def chromium_pids() -> list[int]:
    """Our Chromium processes (children of Playwright's driver, itself our child)."""
    return [
        p.pid
        for p in psutil.Process().children(recursive=True)
        if "chrom" in p.name().lower() and not (p.parent() and "chrom" in p.parent().name().lower())
    ]


def cpu_of(pids: list[int]) -> dict[str, float]:
    """CPU seconds of Chromium's process tree by process type (browser, renderer, utility, ...)."""
    by_type: dict[str, float] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            for member in [proc, *proc.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    kind = next((a.split("=", 1)[1] for a in member.cmdline() if a.startswith("--type=")), "browser")
                    times = member.cpu_times()
                    by_type[kind] = by_type.get(kind, 0.0) + times.user + times.system
    return by_type


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {kind: after[kind] - before.get(kind, 0.0) for kind in after}


RAW_PUT = """async ([key, name]) => {
  const file = document.getElementById("bench-raw").files[0];
  const url = "/api/v1/files/" + encodeURIComponent(name) + "?process=false";
  const answer = await fetch(url, { method: "PUT", body: file, headers: { Authorization: "Bearer " + key } });
  return answer.status;
}"""
"""The same file sent by the same page as one plain ``fetch`` PUT: Chromium's own upload speed, without Uppy or tus."""


async def through_page(browser: Browser, server: ApiServer, key: str, path: str, size: int) -> tuple[Run, Run]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(60_000)
    try:
        page = await context.new_page()
        await page.goto(server.url + "/")
        await page.get_by_test_id("api-key-input").fill(key)
        await page.get_by_test_id("sign-in-submit").click()
        await page.get_by_test_id("whoami").wait_for()
        await page.get_by_test_id("upload-page").wait_for()
        await page.get_by_test_id("process-default").uncheck()
        await page.get_by_test_id("file-input").set_input_files(path)
        row = f'[data-testid="transfer-row"][data-file-name="{os.path.basename(path)}"]'
        await page.locator(f'{row}[data-state="waiting"]').wait_for()
        stored, failed = page.locator(f'{row}[data-state="stored"]'), page.locator(f'{row}[data-state="failed"]')
        browsers = chromium_pids()
        # A slow machine uploads 1 GiB at a few MiB/s at worst: allow that, not for ever.
        budget_ms = max(120_000, size / MiB * 1000)
        with ProcessSampler(server.process.pid) as sampler:
            cpu_before = cpu_of(browsers)
            started = time.perf_counter()
            await page.get_by_test_id("upload-start").click()
            await stored.or_(failed).wait_for(timeout=budget_ms)
            seconds = time.perf_counter() - started
            uppy = Run(seconds, sampler, cpu_spent(cpu_before, cpu_of(browsers)))
        if await failed.count():
            raise SystemExit(f"the page's upload failed: {await failed.get_by_test_id('upload-error').inner_text()}")

        raw_input = await page.evaluate_handle(
            "() => { const i = document.createElement('input'); i.type = 'file'; i.id = 'bench-raw'; document.body.append(i); return i; }"
        )
        await raw_input.as_element().set_input_files(path)  # type: ignore[union-attr]
        with ProcessSampler(server.process.pid) as sampler:
            cpu_before = cpu_of(browsers)
            started = time.perf_counter()
            status = await page.evaluate(RAW_PUT, [key, "bench-fetch.csv"])
            seconds = time.perf_counter() - started
            raw = Run(seconds, sampler, cpu_spent(cpu_before, cpu_of(browsers)))
        if status != 201:
            raise SystemExit(f"the page's fetch PUT answered {status}")
        return uppy, raw
    finally:
        await context.close()


def through_curl(server: ApiServer, key: str, path: str) -> Run:
    with ProcessSampler(server.process.pid) as sampler:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run(
            ["curl", "-sS", "--fail-with-body", "-T", path, "-H", f"Authorization: Bearer {key}",
             "-o", os.devnull, "-w", "%{http_code}", f"{server.url}/api/v1/files/?process=false"],
            capture_output=True, text=True, check=False,
        )
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.stdout.strip() != "201":
        raise SystemExit(f"curl upload failed: {result.stdout} {result.stderr}")
    return Run(seconds, sampler, {"curl": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime})


async def uploads(server: ApiServer, key: str, path: str, size: int) -> tuple[Run, Run, Run]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            uppy, raw = await through_page(browser, server, key, path, size)
        finally:
            await browser.close()
    curl = await asyncio.to_thread(through_curl, server, key, path)
    return uppy, raw, curl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    built = REPO / "web" / "dist"
    if not (built / "index.html").is_file():
        raise SystemExit("web/dist is not built: cd web && npm ci && npm run build (or run ops/test once)")
    if not os.access(CHROMIUM, os.X_OK):
        raise SystemExit(f"no Chromium at {CHROMIUM}: apt-get install chromium, or set SLUICE_BENCH_CHROMIUM")
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed for the baseline")

    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp, bench_settings() as settings:
        # A copy, so that a rebuild of web/dist during the run changes neither the page nor the sizes.
        dist = Path(shutil.copytree(built, Path(tmp) / "dist"))
        first, lazy = bundle_sizes(dist)
        bundles = [("first page (sign in)", first), *((f"+ {name} (lazy)", names) for name, names in sorted(lazy.items()))]
        sizes = [(label, names, *total_gz(dist, names)) for label, names in bundles]
        path = os.path.join(tmp, "bench.csv")
        make_csv(path, args.size_mib * MiB)
        size = os.path.getsize(path)
        key = new_key(settings)
        load_before = os.getloadavg()
        server = ApiServer(settings.replace(web_dist=str(dist)))
        try:
            page, raw, curl = asyncio.run(uploads(server, key, path, size))
        finally:
            server.stop()
        load_after = os.getloadavg()

    gib = size / 1024**3
    print(f"file: {size / MiB:.0f} MiB CSV, S3 endpoint {settings.s3_endpoint}, part size {settings.part_size // MiB} MiB, "
          f"{os.cpu_count()} CPUs, load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"{'':36}{'MiB/s':>8}{'seconds':>9}{'API peak RSS':>14}{'API CPU s/GiB':>15}{'client CPU s/GiB':>18}")
    runs = [("(a) page in Chromium (Uppy, tus)", page), ("(a') same page, one fetch PUT", raw), ("(b) curl -T PUT /api/v1/files", curl)]
    for label, run in runs:
        print(f"{label:36}{size / MiB / run.seconds:8.1f}{run.seconds:9.1f}{run.api.peak_rss / MiB:10.1f} MiB"
              f"{run.api.cpu_seconds / gib:15.2f}{sum(run.client_cpu.values()) / gib:18.2f}")
    for label, run in runs[:2]:
        split = ", ".join(f"{kind} {cpu / gib:.2f}" for kind, cpu in sorted(run.client_cpu.items(), key=lambda kv: -kv[1]) if cpu > 0)
        print(f"Chromium CPU s/GiB by process during {label.split(' ')[0]}: {split}")
    print(f"ratio a/b: {curl.seconds / page.seconds:.2f} (target >= 0.8); a'/b: {curl.seconds / raw.seconds:.2f}")
    print(f"\nbundle (gzip -{GZIP_LEVEL})                  raw KiB  gzip KiB  files")
    for label, names, raw, packed in sizes:
        print(f"{label:34}{raw / 1024:9.1f}{packed / 1024:10.1f}  {', '.join(names)}")


if __name__ == "__main__":
    main()
