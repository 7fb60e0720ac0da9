"""Configuration: defaults written on first use, env overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_platform.config import ConfigError, load_settings


def test_defaults_are_written_and_read_back(platform_home: Path) -> None:
    settings = load_settings()
    assert (platform_home / "config.toml").is_file()
    assert settings.index.keep_versions == 2
    assert settings.gates.max_delete_fraction == 0.5
    assert settings.sensor.interval_s == 30
    assert settings.rerank.provider == "none"
    assert settings.home == platform_home.resolve()


def test_file_values_and_env_overrides(platform_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_settings()
    config = platform_home / "config.toml"
    config.write_text(config.read_text().replace("max_tokens = 200", "max_tokens = 120"))
    monkeypatch.setenv("RAG_PLATFORM__CHUNKER__OVERLAP", "10")
    monkeypatch.setenv("RAG_PLATFORM__QUERIES__STANDING", '["a", "b"]')
    settings = load_settings()
    assert settings.chunker.max_tokens == 120
    assert settings.chunker.overlap == 10
    assert settings.queries.standing == ("a", "b")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RAG_PLATFORM__CHUNKER__MAX_TOKENS", "many", "chunker.max_tokens: expected int"),
        ("RAG_PLATFORM__NOPE__X", "1", "unknown section"),
        ("RAG_PLATFORM__INDEX__NOPE", "1", "unknown key index.nope"),
        ("RAG_PLATFORM__CHUNKER__OVERLAP", "500", "overlap"),
        ("RAG_PLATFORM__GATES__MAX_DELETE_FRACTION", "2", "max_delete_fraction"),
    ],
)
def test_bad_values_are_one_line_errors(
    platform_home: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings()
    assert "\n" not in str(info.value)
