"""Full build cost as the corpus grows: documents/s, chunks/s, share of time per stage, peak RSS.

Each size is a fresh platform home and a seeded synthetic Markdown corpus, indexed by `rag-platform refresh`
in a child process (the path users run). Writes benchmarks/results/full_build.json.
Usage: python benchmarks/full_build.py [--sizes 1000 5000 20000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from common import cli, warm_model_cache, write

from rag_platform.synthetic import generate_corpus


def build(documents: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rag-build-") as tmp:
        corpus, home = Path(tmp) / "corpus", Path(tmp) / "home"
        generate_corpus(corpus, documents)
        summary = cli(home, "refresh", "--source", str(corpus))
    seconds = summary["seconds"]
    stages = summary["stages"]
    embedding = summary["chunks"]["embedding_seconds"]
    chunks = summary["chunks"]["total"]
    return {
        "documents": documents,
        "chunks": chunks,
        "seconds": seconds,
        "wall_seconds": summary["wall_seconds"],
        "documents_per_s": round(documents / seconds, 2),
        "chunks_per_s": round(chunks / seconds, 2),
        "embedding_seconds": embedding,
        "overhead_share": round(1 - embedding / seconds, 4),
        "stage_seconds": stages,
        "stage_share": {step: round(value / sum(stages.values()), 4) for step, value in stages.items()},
        "peak_rss_mib": summary["peak_rss_mib"],
    }


def run(sizes: list[int]) -> dict[str, Any]:
    export = warm_model_cache()
    results = []
    for size in sizes:
        result = build(size)
        print(
            f"{size} documents: {result['seconds']} s, {result['chunks_per_s']} chunks/s, "
            f"overhead {result['overhead_share']:.1%}, peak RSS {result['peak_rss_mib']} MiB",
            flush=True,
        )
        results.append(result)
    return {"model_export_seconds": export, "sizes": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    print(write("full_build.json", run(args.sizes), args.out))


if __name__ == "__main__":
    main()
