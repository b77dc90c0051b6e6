"""Debian's Chromium, as the end-to-end tests and the web benchmark launch it through Playwright."""

from __future__ import annotations

import os
import shutil

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Root in a container needs no sandbox; the rest keeps Chromium off a network it cannot reach."""


def chromium_path() -> str | None:
    return os.environ.get("SLUICE_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
