"""Every configuration key is checked for type and range before anything runs; a broken config file is one
line and exit status 2 from any command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from shared_env import inherited_environment

from rag_platform.config import ConfigError, load_settings
from rag_platform.settings_checks import check_settings, model_window


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("INDEX__RRF_K", "-1", "index.rrf_k must be at least 1"),
        ("INDEX__RRF_K", "0", "index.rrf_k must be at least 1"),
        ("API__MAX_K", "-1", "api.max_k must be at least 1"),
        ("API__MAX_QUERY_CHARS", "0", "api.max_query_chars"),
        ("CHUNKER__MAX_TOKENS", "100000", "must be at most 254"),
        ("CHUNKER__OVERLAP", "-1", "chunker.overlap"),
        ("INDEX__KEYWORD_WEIGHT", "nan", "expected float"),
        ("INDEX__KEYWORD_WEIGHT", "2", "index.keyword_weight"),
        ("INDEX__CANDIDATES", "0", "index.candidates"),
        ("INDEX__NUM_CANDIDATES", "20000", "index.num_candidates"),
        ("INDEX__SHARDS", "0", "index.shards"),
        ("INDEX__ANN_MIN_ROWS", "-5", "index.ann_min_rows"),
        ("INDEX__INDEX_OPTIONS", "fast", "index.index_options must be one of"),
        ("INDEX__ALIAS", "Bad Alias!", "index.alias"),
        ("EMBEDDING__BACKEND", "gpu", "embedding.backend must be one of"),
        ("EMBEDDING__THREADS", "-2", "embedding.threads"),
        ("RERANK__PROVIDER", "openai", "rerank.provider must be one of"),
        ("RERANK__TIMEOUT_S", "0", "rerank.timeout_s"),
        ("QUERIES__K", "0", "queries.k"),
        ("GATES__NDCG_TOLERANCE", "-0.1", "gates.ndcg_tolerance"),
        ("SOURCE__MAX_BYTES", "0", "source.max_bytes"),
    ],
)
def test_out_of_range_values_are_refused(
    platform_home: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"RAG_PLATFORM__{key}", value)
    with pytest.raises(ConfigError, match=message) as info:
        check_settings(load_settings())  # ranges in config; names and the model's window in settings_checks
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[index]\nrrf_k = true\n", "index.rrf_k: expected int, got True"),
        ("[index]\nrrf_k = 'ten'\n", "index.rrf_k: expected int"),
        ("[embedding]\nmodel = 5\n", "embedding.model: expected str"),
        ("[gates]\nmax_delete_fraction = [0.5]\n", "expected float"),
        ("index = 3\n", "[index] must be a table"),
        ("[queries]\nstanding = 'one query'\n", None),  # a single string is a list of one
    ],
)
def test_wrong_types_in_the_file(platform_home: Path, toml: str, message: str | None) -> None:
    platform_home.mkdir(parents=True)
    (platform_home / "config.toml").write_text(toml)
    if message is None:
        assert load_settings().queries.standing == ("one query",)
        return
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_settings()


def test_the_window_is_read_from_the_models_saved_config(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert model_window(str(tiny_model_dir)) == 256
    assert model_window("all-MiniLM-L6-v2") == 256
    assert model_window(str(tmp_path / "no-such-model")) is None  # checked when it loads instead


@pytest.mark.parametrize("broken", ["binary", "folder", "wrong_type", "beyond_the_models_window"])
@pytest.mark.parametrize("command", [["status"], ["search", "glaciers"], ["config", "show"]])
def test_a_broken_config_file_is_one_line_and_exit_2(tmp_path: Path, broken: str, command: list[str]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    config = home / "config.toml"
    if broken == "binary":
        config.write_bytes(b"\x7fELF\x02\x01\x01\x00\xff\xfe\x00\x00")
    elif broken == "folder":
        config.mkdir()
    elif broken == "wrong_type":
        config.write_text("[chunker]\nmax_tokens = '200 tokens'\n")
    else:
        config.write_text("[chunker]\nmax_tokens = 100000\n")
    environment = {**inherited_environment(), "RAG_PLATFORM_HOME": str(home)}
    result = subprocess.run(
        [sys.executable, "-m", "rag_platform.cli", *command, "--json"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert "config" in result.stderr and "Traceback" not in result.stderr
