"""Helpers shared by the benchmark scripts: run the `rag-platform` CLI as users do and measure that process."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


# ONNX exports shared by every benchmark home: exporting and quantizing the model is a one-time cost per
# machine (timed by warm_model_cache), not part of any build or refresh.
MODEL_CACHE = Path(tempfile.gettempdir()) / "rag-platform-bench-models"


def warm_model_cache() -> float:
    """Make the default embedding backend's export in MODEL_CACHE (if missing); returns the seconds it took."""
    from rag_platform.config import EmbeddingSettings
    from rag_platform.embedding import make_embedder

    started = time.perf_counter()
    make_embedder(EmbeddingSettings(), MODEL_CACHE).embed(["warm up"])
    return round(time.perf_counter() - started, 3)


def cli(home: Path, *args: str) -> dict[str, Any]:
    """Run ``rag-platform ARGS --json`` in a child process; adds its wall time and peak RSS (MiB)."""
    env = {**os.environ, "RAG_PLATFORM_HOME": str(home), "RAG_PLATFORM__EMBEDDING__EXPORT_DIR": str(MODEL_CACHE)}
    env.pop("DAGSTER_HOME", None)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "rag_platform.cli", *args, "--json"], stdout=out, stderr=err, env=env
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            tail = err.read().decode(errors="replace").strip().splitlines()[-1:]
            raise SystemExit(f"rag-platform {' '.join(args)} failed: {tail}")
        report: dict[str, Any] = json.loads(out.read())
    report["wall_seconds"] = round(wall, 3)
    report["peak_rss_mib"] = round(usage.ru_maxrss / 1024, 1)  # Linux reports KiB
    return report


def write(name: str, report: dict[str, Any], out: Path | None = None) -> Path:
    path = out or RESULTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, "machine": machine()}, indent=2) + "\n")
    return path
