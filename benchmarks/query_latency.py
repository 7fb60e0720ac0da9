"""Query latency on the embedded backend: p50/p95 per mode at concurrency 1 and 8, for 10k and 100k chunks,
split into query-embedding time and search time (``Searcher.retrieve``, the path the CLI and API use).

The index is filled through the backend's own upsert and refresh with seeded synthetic chunk texts and random
unit vectors: embedding 100k chunks would take half an hour here and does not change search cost.
Writes benchmarks/results/query_latency.json. Usage: python benchmarks/query_latency.py [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from common import write

from rag_platform.backends.lancedb import LanceDBBackend
from rag_platform.config import load_settings
from rag_platform.embedding import cached_embedder
from rag_platform.records import IndexedChunk
from rag_platform.retrieval import MODES, Searcher, SearchRequest
from rag_platform.synthetic import document_text

DIM = 384
ALIAS = "rag_chunks"


def fill_index(backend: LanceDBBackend, name: str, size: int, seed: int = 3) -> None:
    rng = random.Random(seed)
    vectors = np.random.default_rng(seed).standard_normal((size, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    backend.create_version(name, DIM, {"alias": ALIAS})
    batch: list[IndexedChunk] = []
    for i in range(size):
        text = " ".join(document_text(rng, i).split()[:120])
        batch.append(
            IndexedChunk(
                chunk_id=f"{i:032x}",
                document_id=f"{i // 4:032x}",
                source=f"file:///bench/doc-{i // 4}.md",
                title=f"Document {i // 4}",
                text=text,
                document_version="v1",
                run_id="bench",
                vector=vectors[i].tolist(),
            )
        )
        if len(batch) == 5000:
            backend.upsert(name, batch)
            batch = []
    backend.upsert(name, batch)
    backend.refresh(name)
    backend.swap_alias(ALIAS, name)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def measure(searcher: Searcher, version: str, queries: list[str], mode: str, concurrency: int) -> dict[str, Any]:
    def one(query: str) -> dict[str, float]:
        request = SearchRequest(query=query, k=10, mode=mode).validated(searcher.settings)
        _, timings = searcher.retrieve(request, version, 10)
        return timings

    for query in queries[:5]:  # warm caches and the model outside the measurement
        one(query)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        timings = list(pool.map(one, queries))
    elapsed = time.perf_counter() - started
    search = [t["search"] for t in timings]
    embed = [t["embed"] for t in timings]
    total = [t["search"] + t["embed"] for t in timings]
    return {
        "requests": len(queries),
        "qps": round(len(queries) / elapsed, 1),
        "search_ms": {"p50": percentile(search, 0.5), "p95": percentile(search, 0.95)},
        "embed_ms": {"p50": percentile(embed, 0.5), "p95": percentile(embed, 0.95)},
        "total_ms": {"p50": percentile(total, 0.5), "p95": percentile(total, 0.95)},
        "search_ms_mean": round(statistics.fmean(search), 3),
    }


def run(sizes: list[int], requests: int = 200) -> dict[str, Any]:
    rng = random.Random(5)
    vocabulary = document_text(random.Random(9), 0).split()
    queries = [" ".join(rng.sample(vocabulary, 4)) for _ in range(requests)]
    report: dict[str, Any] = {"requests_per_cell": requests, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="rag-latency-") as tmp:
        os.environ["RAG_PLATFORM_HOME"] = str(Path(tmp) / "home")
        settings = load_settings()
        embedder = cached_embedder(settings.embedding, settings.cache_dir)
        report["embedding_backend"] = settings.embedding.backend
        for size in sizes:
            backend = LanceDBBackend(Path(tmp) / f"index-{size}", ann_min_rows=settings.index.ann_min_rows)
            name = f"{ALIAS}-bench-{size}"
            started = time.perf_counter()
            fill_index(backend, name, size)
            searcher = Searcher(settings, embedder, backend)
            cells = {
                f"{mode}@{concurrency}": measure(searcher, name, queries, mode, concurrency)
                for mode in MODES
                for concurrency in (1, 8)
            }
            report["sizes"][str(size)] = {
                "build_seconds": round(time.perf_counter() - started, 1),
                "ann_index": size >= settings.index.ann_min_rows,
                "cells": cells,
            }
            print(f"{size} chunks: " + ", ".join(f"{k} p95 {v['search_ms']['p95']} ms" for k, v in cells.items()))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    print(write("query_latency.json", run(args.sizes, args.requests), args.out))


if __name__ == "__main__":
    main()
