"""``rag-platform eval``: index a BEIR collection through the normal refresh job in an isolated platform home,
run its queries in every mode and score documents (a document ranks by its best chunk)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag_platform import warehouse
from rag_platform.config import Settings, load_settings
from rag_platform.defs.runner import execute_refresh
from rag_platform.evaluation import load_beir, write_trec_run
from rag_platform.ingest import register_source
from rag_platform.records import stable_hash
from rag_platform.retrieval import Searcher
from rag_platform.scoring import score_version
from rag_platform.search_request import MODES

Log = Callable[[str], None]


def eval_home(settings: Settings, dataset: Path) -> Path:
    """An isolated home per dataset and configuration, beside the platform's own state."""
    key = stable_hash([str(dataset.resolve()), settings.as_dict()["embedding"], settings.as_dict()["chunker"]], 12)
    return settings.home / "eval" / f"{dataset.name}-{key}"


def run_evaluation(
    settings: Settings, dataset_dir: Path, run_out: Path | None = None, log: Log = print
) -> dict[str, Any]:
    """Index ``dataset_dir`` in an isolated index, run every query in every mode, and return the metrics."""
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
    eval_settings = load_settings(home)
    with warehouse.writer(eval_settings) as con:
        register_source(con, corpus_dir)
    log(f"indexing {len(dataset.corpus)} documents of {dataset_dir.name} into {home}")
    outcome = execute_refresh(eval_settings, False, trigger="eval")
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
