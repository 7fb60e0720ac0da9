"""Fixtures of the API tests: one platform home indexed by the real pipeline, and a server over it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from served_api import Server

from rag_platform.config import load_settings

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"


@pytest.fixture(scope="session")
def built_home(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A platform home with a published index of the fixture corpus (tiny model, real pipeline); built once
    for the API, answer and search-page tests, which only read it."""
    from rag_platform import warehouse
    from rag_platform.defs.runner import execute_refresh
    from rag_platform.ingest import register_source

    root = tmp_path_factory.mktemp("api")
    corpus = root / "corpus"
    shutil.copytree(CORPUS, corpus)
    (corpus / "empty.md").write_bytes(b"")  # quarantined: visible through GET /quarantine
    saved = dict(os.environ)
    os.environ.update(
        {
            "RAG_PLATFORM_HOME": str(root / "home"),
            "DAGSTER_HOME": str(root / "home" / "dagster"),
            "RAG_PLATFORM__EMBEDDING__MODEL": str(tiny_model_dir),
        }
    )
    try:
        settings = load_settings()
        with warehouse.writer(settings) as con:
            register_source(con, corpus)
        assert execute_refresh(settings, False, trigger="test").success
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return root / "home"


@pytest.fixture
def served(built_home: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> Iterator[Server]:
    """A running server over ``built_home``; tests may set more environment before requesting it."""
    monkeypatch.setenv("RAG_PLATFORM_HOME", str(built_home))
    monkeypatch.setenv("RAG_PLATFORM__EMBEDDING__MODEL", str(tiny_model_dir))
    server = Server(built_home)
    with server:
        yield server


@pytest.fixture
def api(served: Server) -> httpx.Client:
    return served.client
