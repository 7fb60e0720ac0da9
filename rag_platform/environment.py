"""Process environment shared by the CLI and the Dagster code location: where Dagster keeps its instance,
and offline settings for the model libraries."""

from __future__ import annotations

import os
from pathlib import Path

from rag_platform.config import Settings

DAGSTER_YAML = """# Written by rag-platform on first use; edit freely (e.g. PostgreSQL storage).
telemetry:
  enabled: false
run_queue:
  max_concurrent_runs: 1
"""


def prepare_environment(settings: Settings) -> Path:
    """Point ``DAGSTER_HOME`` at the platform home's instance (unless set) and make sure it exists."""
    os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home))
    os.environ["RAG_PLATFORM_HOME"] = str(settings.home)
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML, encoding="utf-8")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    return home
