"""Score an index version on a judged collection: every judged query in each mode, documents ranked by their
best chunk."""

from __future__ import annotations

from collections.abc import Sequence

from rag_platform.evaluation import BeirDataset, documents_from_chunks, score_run
from rag_platform.retrieval import Searcher
from rag_platform.search_request import MODES, SearchRequest

RUN_DEPTH = 100

Metrics = dict[str, dict[str, float]]
Runs = dict[str, dict[str, dict[str, float]]]


def score_version(
    searcher: Searcher, version: str, dataset: BeirDataset, modes: Sequence[str] = MODES
) -> tuple[Metrics, Runs]:
    """Run every judged query against one index version in each mode: (metrics per mode, run per mode)."""
    judged = [qid for qid in dataset.queries if dataset.qrels.get(qid)]
    metrics: Metrics = {}
    runs: Runs = {}
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
