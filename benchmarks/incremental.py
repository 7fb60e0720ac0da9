"""Incremental refresh cost: a full build of a synthetic corpus, then a refresh after 1% of the documents
changed (a third modified, a third added, a third deleted), both through the `rag-platform` CLI.

Writes benchmarks/results/incremental.json. Usage: python benchmarks/incremental.py [--documents 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rag_platform.synthetic import apply_changes, generate_corpus

RESULTS = Path(__file__).parent / "results"


def refresh(home: Path, *args: str) -> dict:
    env = {**os.environ, "RAG_PLATFORM_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "rag_platform.cli", "refresh", *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"refresh failed: {result.stderr.strip().splitlines()[-1:]}")
    summary = json.loads(result.stdout)
    summary["wall_seconds"] = round(wall, 3)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=RESULTS / "incremental.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        root = Path(tmp)
        corpus, home = root / "corpus", root / "home"
        generate_corpus(corpus, args.documents)
        full = refresh(home, "--source", str(corpus))
        unchanged = refresh(home)
        changes = apply_changes(corpus, args.fraction)
        incremental = refresh(home)
    report = {
        "documents": args.documents,
        "changed": {"modified": len(changes.modified), "added": len(changes.added), "deleted": len(changes.deleted)},
        "full_build": {k: full[k] for k in ("seconds", "wall_seconds", "documents", "chunks")},
        "no_change_refresh": {k: unchanged[k] for k in ("seconds", "wall_seconds", "chunks")},
        "incremental_refresh": {k: incremental[k] for k in ("seconds", "wall_seconds", "documents", "chunks", "index")},
        "incremental_share_of_full": round(incremental["seconds"] / full["seconds"], 4),
        "full_chunks_per_s": round(full["chunks"]["total"] / full["seconds"], 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
