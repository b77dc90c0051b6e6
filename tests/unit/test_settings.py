from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from db.settings import Settings


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_MAX_FILE_SIZE", "1000")
    monkeypatch.setenv("SLUICE_S3_SECURE", "true")
    monkeypatch.setenv("SLUICE_ALLOWED_KINDS", "csv, other")
    settings = Settings.from_env()
    assert settings.max_file_size == 1000
    assert settings.s3_secure is True
    assert settings.allowed_kinds == ("csv", "other")
    assert Settings.from_env(max_file_size=5).max_file_size == 5


@pytest.mark.parametrize(("name", "value"), [("SLUICE_S3_SECURE", "ture"), ("SLUICE_PART_SIZE", "8MiB")])
def test_a_mistyped_value_is_an_error_not_a_default(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"{name}={value!r} is not a"):
        Settings.from_env()


def test_boolean_words_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    for word, expected in (("off", False), ("No", False), ("0", False), ("ON", True), ("yes", True)):
        monkeypatch.setenv("SLUICE_S3_SECURE", word)
        assert Settings.from_env().s3_secure is expected


def test_defaults_match_the_documented_contract() -> None:
    settings = Settings()
    assert settings.max_file_size == 3 * 1024**3
    assert settings.session_ttl == 24 * 3600
    assert settings.part_size >= 5 * 1024**2


def test_parts_smaller_than_s3_allows_are_refused() -> None:
    with pytest.raises(ValueError, match="5 MiB"):
        Settings(part_size=1024)


def test_every_setting_is_in_compose_and_the_readme() -> None:
    """compose.yaml passes every setting to the services and the README documents each one."""
    root = Path(__file__).resolve().parents[2]
    compose = (root / "compose.yaml").read_text()
    readme = (root / "README.md").read_text()
    names = [f"SLUICE_{f.name.upper()}" for f in dataclasses.fields(Settings)]
    assert [n for n in names if f"  {n}:" not in compose] == []
    assert [n for n in names if f"`{n}`" not in readme and f"{n}`" not in readme] == []
