"""The whole benchmark suite in one run (`make bench`): JSON results and PNG charts in benchmarks/results/.

1. embedding backends side by side on the same chunks (`rag-platform benchmark embed`);
2. full builds at 1k, 5k and 20k synthetic documents: documents/s, chunks/s, stage shares, peak RSS;
3. incremental refresh after 1% of 2,000 and of 20,000 documents changed;
4. query latency per mode at 10k and 100k chunks, concurrency 1 and 8;
5. the dbt step at 20,000 and 100,000 documents, first build and after 1% changed.

Usage: python benchmarks/run_all.py [--quick]   (--quick: smaller sizes, for a smoke run)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import dbt_scaling
import full_build
import incremental
import query_latency
from common import RESULTS, cli, write


def embedding(chunks: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rag-embed-") as tmp:
        report = cli(Path(tmp) / "home", "benchmark", "embed", "--chunks", str(chunks))
    return report


def charts(results: dict[str, dict[str, Any]], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    backends = results["embedding"]["backends"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(backends)
    bars = ax.bar(
        names, [backends[n]["chunks_per_s"] for n in names], color=["#888", "#4c78a8", "#f58518"][: len(names)]
    )
    for bar, name in zip(bars, names, strict=True):
        ax.annotate(
            f"{backends[name]['speedup_vs_torch']}x\nmin cos {backends[name]['min_cosine']:.3f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel("chunks / s")
    ax.set_title(f"Embedding backends, same {results['embedding']['chunks']} chunks")
    ax.margins(y=0.25)
    written.append(_save(fig, folder / "embedding_backends.png"))

    sizes = results["full_build"]["sizes"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    docs = [s["documents"] for s in sizes]
    left.plot(docs, [s["seconds"] for s in sizes], "o-", label="build seconds")
    left.set_xlabel("documents")
    left.set_ylabel("seconds")
    twin = left.twinx()
    twin.plot(docs, [s["peak_rss_mib"] for s in sizes], "s--", color="#e45756", label="peak RSS (MiB)")
    twin.set_ylabel("peak RSS (MiB)")
    left.set_title("Full build cost and memory")
    steps = sorted({step for s in sizes for step in s["stage_share"]})
    bottom = [0.0] * len(sizes)
    for step in steps:
        share = [s["stage_share"].get(step, 0.0) for s in sizes]
        right.bar([str(d) for d in docs], share, bottom=bottom, label=step)
        bottom = [b + v for b, v in zip(bottom, share, strict=True)]
    right.set_title("Share of time per stage")
    right.set_xlabel("documents")
    right.legend(fontsize=6, loc="center left", bbox_to_anchor=(1, 0.5))
    written.append(_save(fig, folder / "full_build.png"))

    latency = results["query_latency"]["sizes"]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    labels, p50, p95 = [], [], []
    for size, data in latency.items():
        for cell, measured in data["cells"].items():
            labels.append(f"{int(size) // 1000}k {cell}")
            p50.append(measured["search_ms"]["p50"])
            p95.append(measured["search_ms"]["p95"])
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], p50, width=0.4, label="p50")
    ax.bar([i + 0.2 for i in x], p95, width=0.4, label="p95")
    ax.axhline(20, color="#e45756", linestyle=":", label="20 ms goal (hybrid @100k)")
    ax.set_xticks(list(x), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("search ms (excl. query embedding)")
    ax.set_title("Query latency, embedded backend")
    ax.legend(fontsize=7)
    written.append(_save(fig, folder / "query_latency.png"))

    inc = results["incremental"]["sizes"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    runs = (("full_build", "full build", "#888"), ("no_change_refresh", "no change", "#4c78a8"))
    runs += (("incremental_refresh", "1% changed", "#f58518"),)
    for offset, (key, label, color) in enumerate(runs):
        ax.bar(
            [i + (offset - 1) * 0.27 for i in range(len(inc))],
            [r[key]["seconds"] for r in inc],
            0.27,
            label=label,
            color=color,
        )
    ax.set_xticks(range(len(inc)), [f"{r['documents']:,} docs ({r['incremental_share_of_full']:.1%})" for r in inc])
    ax.set_yscale("log")
    ax.set_ylabel("seconds (log)")
    ax.set_title("Refresh cost (1% refresh as share of full build)")
    ax.legend(fontsize=7)
    written.append(_save(fig, folder / "incremental.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


PARTS = ("embedding", "full_build", "incremental", "query_latency", "dbt_scaling")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="rerun these; reuse saved results for the rest"
    )
    args = parser.parse_args()
    quick = args.quick
    folder = RESULTS / "quick" if quick else RESULTS
    runners = {
        "embedding": lambda: embedding(64 if quick else 512),
        "full_build": lambda: full_build.run([100, 300] if quick else [1000, 5000, 20000]),
        "incremental": lambda: incremental.run([200] if quick else [2000, 20000]),
        "query_latency": lambda: query_latency.run([2000, 5000] if quick else [10_000, 100_000], 40 if quick else 200),
        "dbt_scaling": lambda: dbt_scaling.run([500] if quick else [20_000, 100_000]),
    }
    results = {}
    for name in PARTS:
        if name in args.parts:
            results[name] = runners[name]()
            print(write(f"{name}.json", results[name], folder / f"{name}.json"))
        else:
            results[name] = json.loads((folder / f"{name}.json").read_text())
    for path in charts(results, folder):
        print(path)


if __name__ == "__main__":
    main()
