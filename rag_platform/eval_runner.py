"""``rag-platform eval``: index a BEIR collection through the normal refresh job in an isolated platform home,
run its queries in every mode and score documents (a document ranks by its best chunk)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rag_platform.config import Settings, load_settings
from rag_platform.evaluation import BeirDataset, documents_from_chunks, load_beir, score_run, write_trec_run
from rag_platform.records import stable_hash
from rag_platform.retrieval import MODES, Searcher, SearchRequest

Log = Callable[[str], None]
RUN_DEPTH = 100


@contextmanager
def _platform_home(home: Path) -> Iterator[None]:
    """Point the refresh job at another platform home for the duration (its resources read the env)."""
    previous = os.environ.get("RAG_PLATFORM_HOME")
    os.environ["RAG_PLATFORM_HOME"] = str(home)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("RAG_PLATFORM_HOME", None)
        else:
            os.environ["RAG_PLATFORM_HOME"] = previous


def eval_home(settings: Settings, dataset: Path) -> Path:
    """An isolated home per dataset and configuration, beside the platform's own state."""
    key = stable_hash([str(dataset.resolve()), settings.as_dict()["embedding"], settings.as_dict()["chunker"]], 12)
    return settings.home / "eval" / f"{dataset.name}-{key}"


def score_version(
    searcher: Searcher, version: str, dataset: BeirDataset, modes: Sequence[str] = MODES
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, dict[str, float]]]]:
    """Run every judged query against one index version in each mode: (metrics per mode, run per mode)."""
    judged = [qid for qid in dataset.queries if dataset.qrels.get(qid)]
    metrics: dict[str, dict[str, float]] = {}
    runs: dict[str, dict[str, dict[str, float]]] = {}
    for mode in modes:
        run: dict[str, dict[str, float]] = {}
        for qid in judged:
            request = SearchRequest(query=dataset.queries[qid], k=1, mode=mode).validated(searcher.settings)
            hits, _ = searcher.retrieve(request, version, RUN_DEPTH)
            ranked = documents_from_chunks([(dataset.document_key(hit.source), hit.score) for hit in hits], RUN_DEPTH)
            run[qid] = dict(ranked)
        metrics[mode] = score_run(run, dataset.qrels)
        runs[mode] = run
    return metrics, runs


def run_evaluation(
    settings: Settings, dataset_dir: Path, run_out: Path | None = None, log: Log = print
) -> dict[str, Any]:
    """Index ``dataset_dir`` in an isolated index, run every query in every mode, and return the metrics."""
    from rag_platform.defs.runner import execute_refresh

    dataset = load_beir(dataset_dir)
    home = eval_home(settings, dataset_dir)
    corpus_dir = home / "corpus"
    if not corpus_dir.is_dir():
        staging = home / "corpus.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        dataset.to_markdown_files(staging)
        staging.rename(corpus_dir)
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(settings.home / "config.toml", home / "config.toml")
    with _platform_home(home):
        eval_settings = load_settings(home)
        from rag_platform import warehouse
        from rag_platform.ingest import register_source

        with warehouse.writer(eval_settings) as con:
            register_source(con, corpus_dir)
        log(f"indexing {len(dataset.corpus)} documents of {dataset_dir.name} into {home}")
        outcome = execute_refresh(False, trigger="eval")
        if not outcome.success:
            raise RuntimeError(f"indexing the evaluation corpus failed: {outcome.failure}")
        searcher = Searcher(eval_settings)
        version = searcher.served_version()
        judged = [qid for qid in dataset.queries if dataset.qrels.get(qid)]
        modes, runs = score_version(searcher, version, dataset, MODES)
        for mode in MODES:
            if run_out is not None:
                run_out.mkdir(parents=True, exist_ok=True)
                write_trec_run(run_out / f"{mode}.trec", runs[mode], tag=f"rag-platform-{mode}")
            log(f"{mode}: " + ", ".join(f"{k}={v:.4f}" for k, v in modes[mode].items()))
    return {
        "dataset": str(dataset_dir),
        "documents": len(dataset.corpus),
        "queries": len(judged),
        "index_version": version,
        "modes": modes,
    }
