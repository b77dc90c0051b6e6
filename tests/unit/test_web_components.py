"""The web app's Vitest suite (formatters, ETA, job-progress reducer, key storage, routing), run
as part of the one test command."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support.servers import REPO

WEB = REPO / "web"


def test_the_web_apps_vitest_suite_passes() -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the web app's Vitest suite cannot run")
    if not (WEB / "node_modules" / ".bin" / "vitest").exists():
        if os.environ.get("SLUICE_WEB_BUILD") == "0":
            pytest.skip("the web app's packages are not installed (SLUICE_WEB_BUILD=0)")
        pytest.fail("web/node_modules is missing: ops/test installs it with `npm ci` (see .sluice/logs/web-build.log)")
    result = subprocess.run([npm, "test", "--", "--reporter=dot"], cwd=WEB, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "passed" in result.stdout, result.stdout[-2000:]
