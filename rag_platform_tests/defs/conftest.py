"""Fixtures of the Dagster-layer tests: a registered copy of the test corpus in an isolated home."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag_platform import warehouse
from rag_platform.config import load_settings
from rag_platform.environment import prepare_environment
from rag_platform.ingest import register_source

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"


@pytest.fixture
def source(platform_home: Path, tmp_path: Path) -> Path:
    """A copy of the test corpus, registered as a source (the read snapshot knows it), nothing ingested."""
    target = tmp_path / "corpus"
    shutil.copytree(CORPUS, target)
    settings = load_settings()
    prepare_environment(settings)
    with warehouse.writer(settings) as con:
        register_source(con, target)
    warehouse.export_snapshot(settings)
    return target
