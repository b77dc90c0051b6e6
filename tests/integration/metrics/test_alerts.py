"""ops/prometheus: the alert rules and the scrape configuration pass promtool, and the rules' unit tests hold."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.servers import REPO

RULES = REPO / "ops" / "prometheus"
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus package) is not installed")


def promtool(*args: str, cwd: Path = RULES) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_rules_and_the_scrape_configuration_are_valid() -> None:
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 9 rules found" in rules.stdout
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_the_alerts_fire_on_failures_and_stay_quiet_otherwise() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        # Without its `for`, a one-scrape blip of a dependency would page someone.
        ("        expr: min by (dependency) (sluice_dependency_up) == 0\n        for: 2m\n",
         "        expr: min by (dependency) (sluice_dependency_up) == 0\n        for: 0m\n"),
        # Counting cancelled jobs as failures would alert on users who cancel.
        ('state=~"failed|timed_out"', 'state=~"failed|timed_out|cancelled"'),
        # Adding up the API processes' copies of the same count would double it.
        ("sum(max by (route) (sluice_upload_sessions_open)) > 1000", "sum(sluice_upload_sessions_open) > 1000"),
    ],
)
def test_the_unit_tests_catch_a_broken_rule(tmp_path: Path, original: str, broken: str) -> None:
    rules = (RULES / "alerts.yml").read_text()
    assert rules.count(original) == 1
    (tmp_path / "alerts.yml").write_text(rules.replace(original, broken))
    shutil.copy(RULES / "alerts_test.yml", tmp_path / "alerts_test.yml")
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0, "the unit tests passed with a broken rule"
    assert "FAILED" in result.stdout + result.stderr
