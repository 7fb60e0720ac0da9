"""What the dbt step costs as the corpus grows: the refresh job's `dbt build` (same project, profile, selection
and dagster-dbt resource) on a warehouse of N documents read by the platform's own ingest, then again after 1%
of them changed. stg_documents builds incrementally (only new versions); current_documents is rebuilt in full
on every run, and this measures what that rebuild costs at 100,000 documents. No model runs here: dbt comes
before chunking, so the full job is not needed to time it.

Writes benchmarks/results/dbt_scaling.json. Usage: python benchmarks/dbt_scaling.py [--documents 20000 100000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from common import write

from rag_platform import warehouse
from rag_platform.config import load_settings
from rag_platform.dbt import dbt_vars, ensure_manifest
from rag_platform.defs.transform import dbt_resource
from rag_platform.ingest import ingest_sources, register_source
from rag_platform.synthetic import apply_changes, generate_corpus


def ingest(home: Path, corpus: Path, run_id: str) -> float:
    settings = load_settings(home)
    started = time.perf_counter()
    with warehouse.writer(settings) as con:
        register_source(con, corpus)
        ingest_sources(con, [corpus], run_id, settings.source.max_bytes)
    return round(time.perf_counter() - started, 3)


def dbt_build(home: Path) -> dict[str, Any]:
    """One `dbt build` as the dbt_models asset runs it; seconds per model and for all tests from run_results."""
    settings = load_settings(home)
    target = settings.home / "dbt" / "target"
    manifest = ensure_manifest(settings.home)
    started = time.perf_counter()
    dbt_resource().cli(
        ["build", "--vars", dbt_vars(settings.warehouse_path)], manifest=manifest, target_path=target
    ).wait()
    seconds = round(time.perf_counter() - started, 3)
    results = json.loads((target / "run_results.json").read_text())["results"]
    kind = {r["unique_id"]: r["unique_id"].split(".")[0] for r in results}
    models = {
        r["unique_id"].split(".")[-1]: round(r["execution_time"], 3) for r in results if kind[r["unique_id"]] == "model"
    }
    tests = sum(r["execution_time"] for r in results if kind[r["unique_id"]] == "test")
    return {"seconds": seconds, "models": models, "tests_seconds": round(tests, 3)}


def run_one(documents: int, fraction: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rag-dbt-") as tmp:
        corpus, home = Path(tmp) / "corpus", Path(tmp) / "home"
        generate_corpus(corpus, documents)
        ingest_full = ingest(home, corpus, "bench-full")
        ensure_manifest(home)  # the one-time parse is not part of a run
        full = dbt_build(home)
        apply_changes(corpus, fraction)
        ingest_changed = ingest(home, corpus, "bench-changed")
        changed = dbt_build(home)
    return {
        "documents": documents,
        "first_build": {"ingest_seconds": ingest_full, "dbt": full},
        "after_change": {"ingest_seconds": ingest_changed, "dbt": changed},
    }


def run(sizes: list[int], fraction: float = 0.01) -> dict[str, Any]:
    return {"fraction": fraction, "sizes": [run_one(size, fraction) for size in sizes]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    print(write("dbt_scaling.json", run(args.documents), args.out))


if __name__ == "__main__":
    main()
