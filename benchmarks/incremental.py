"""Incremental refresh cost: a full build of a synthetic corpus, then a refresh with nothing changed, then one
after 1% of the documents changed (a third modified, a third added, a third deleted), all through the
`rag-platform` CLI; per corpus size, since a refresh's fixed cost weighs less as the corpus grows.

Writes benchmarks/results/incremental.json. Usage: python benchmarks/incremental.py [--documents 2000 20000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from common import cli, warm_model_cache, write

from rag_platform.synthetic import apply_changes, generate_corpus


def refresh(home: Path, *args: str) -> dict[str, Any]:
    return cli(home, "refresh", *args)


def run(sizes: list[int], fraction: float = 0.01) -> dict[str, Any]:
    export = warm_model_cache()
    return {"fraction": fraction, "model_export_seconds": export, "sizes": [run_one(d, fraction) for d in sizes]}


def run_one(documents: int, fraction: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        root = Path(tmp)
        corpus, home = root / "corpus", root / "home"
        generate_corpus(corpus, documents)
        full = refresh(home, "--source", str(corpus))
        unchanged = refresh(home)
        changes = apply_changes(corpus, fraction)
        incremental = refresh(home)
    return {
        "documents": documents,
        "changed": {"modified": len(changes.modified), "added": len(changes.added), "deleted": len(changes.deleted)},
        "full_build": {k: full[k] for k in ("seconds", "wall_seconds", "documents", "chunks")},
        "no_change_refresh": {k: unchanged[k] for k in ("seconds", "wall_seconds", "chunks", "stages")},
        "incremental_refresh": {
            k: incremental[k] for k in ("seconds", "wall_seconds", "documents", "chunks", "index", "stages")
        },
        "incremental_share_of_full": round(incremental["seconds"] / full["seconds"], 4),
        "incremental_wall_share_of_full": round(incremental["wall_seconds"] / full["wall_seconds"], 4),
        "unchanged_chunks_reembedded": max(0, incremental["chunks"]["embedded"] - incremental["chunks"]["added"]),
        "full_chunks_per_s": round(full["chunks"]["total"] / full["seconds"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = run(args.documents, args.fraction)
    print(write("incremental.json", report, args.out))


if __name__ == "__main__":
    main()
