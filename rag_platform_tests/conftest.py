"""Shared fixtures. Tests import the installed ``rag_platform``; this folder is put on sys.path only so that
test helpers (``fakes.py``) can be imported by name."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@pytest.fixture
def platform_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated platform home (and Dagster home inside it) for one test."""
    home = tmp_path / "home"
    monkeypatch.setenv("RAG_PLATFORM_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    for name in list(os.environ):
        if name.startswith("RAG_PLATFORM__") or name == "RAG_ES_URL":
            monkeypatch.delenv(name, raising=False)
    return home
