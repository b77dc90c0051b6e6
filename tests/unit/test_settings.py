from __future__ import annotations

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


def test_defaults_match_the_documented_contract() -> None:
    settings = Settings()
    assert settings.max_file_size == 3 * 1024**3
    assert settings.session_ttl == 24 * 3600
    assert settings.part_size >= 5 * 1024**2


def test_parts_smaller_than_s3_allows_are_refused() -> None:
    with pytest.raises(ValueError, match="5 MiB"):
        Settings(part_size=1024)
