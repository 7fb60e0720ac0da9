"""Markdown tables from the JSON results in benchmarks/results/ (pasted into the README's Performance section).

Usage: python benchmarks/report.py [--results DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from common import RESULTS


def load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS)
    folder = parser.parse_args().results
    out = []
    if embedding := load(folder, "embedding"):
        rows = [
            [name, m["chunks_per_s"], f"{m['speedup_vs_torch']}x", m["cosine_vs_torch"], m["min_cosine"]]
            for name, m in embedding["backends"].items()
        ]
        out.append(f"Embedding, {embedding['chunks']} chunks, default `{embedding['default']}`:\n")
        out.append(table(["backend", "chunks/s", "vs torch", "mean cosine", "min cosine"], rows))
    if build := load(folder, "full_build"):
        rows = [
            [
                s["documents"],
                s["chunks"],
                s["seconds"],
                s["documents_per_s"],
                s["chunks_per_s"],
                f"{s['overhead_share']:.1%}",
                s["peak_rss_mib"],
            ]
            for s in build["sizes"]
        ]
        header = ["documents", "chunks", "seconds", "docs/s", "chunks/s", "non-embedding share", "peak RSS MiB"]
        out.append(table(header, rows))
    if inc := load(folder, "incremental"):
        rows = [
            [
                f"{r['documents']:,}",
                r["full_build"]["seconds"],
                r["no_change_refresh"]["seconds"],
                r["incremental_refresh"]["seconds"],
                r["incremental_refresh"]["chunks"]["embedded"],
                r["unchanged_chunks_reembedded"],
                f"{r['incremental_share_of_full']:.1%}",
            ]
            for r in inc["sizes"]
        ]
        header = ["documents", "full build s", "no change s", "1% changed s", "embedded", "unchanged re-embedded"]
        out.append(table([*header, "share of full"], rows))
    if latency := load(folder, "query_latency"):
        rows = []
        for size, data in latency["sizes"].items():
            for cell, m in data["cells"].items():
                mode, concurrency = cell.split("@")
                rows.append(
                    [
                        size,
                        mode,
                        concurrency,
                        m["search_ms"]["p50"],
                        m["search_ms"]["p95"],
                        m["embed_ms"]["p50"],
                        m["embed_ms"]["p95"],
                        m["qps"],
                    ]
                )
        header = ["chunks", "mode", "concurrency", "search p50", "search p95", "embed p50", "embed p95", "qps"]
        out.append(table(header, rows))
    if dbt := load(folder, "dbt_scaling"):
        rows = [
            [
                f"{r['documents']:,}",
                step["dbt"]["seconds"],
                step["dbt"]["models"].get("stg_documents"),
                step["dbt"]["models"].get("current_documents"),
                step["dbt"]["tests_seconds"],
                run,
            ]
            for r in dbt["sizes"]
            for run, step in (("first build", r["first_build"]), ("after 1% changed", r["after_change"]))
        ]
        header = ["documents", "dbt step s", "stg_documents s", "current_documents s", "tests s", "run"]
        out.append(table(header, rows))
    print("\n\n".join(out))


if __name__ == "__main__":
    main()
