"""The retrieval-quality gate: with ``eval.dataset`` set, every candidate version is scored before the alias
may move, and an nDCG@10 drop beyond ``gates.ndcg_tolerance`` blocks publishing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rag_platform.config import load_settings
from rag_platform.evaluation import gain_gate, load_beir, regression_gate
from rag_platform.ingest import now
from rag_platform.retrieval import Searcher
from rag_platform.scoring import score_version
from rag_platform.warehouse import first_row

if TYPE_CHECKING:
    import duckdb

    from rag_platform.gates import Gate
    from rag_platform.index_sync import QualityGate
    from rag_platform.parts import RunParts


def retrieval_quality_gate(parts: RunParts, con: duckdb.DuckDBPyConnection, run_id: str) -> QualityGate | None:
    """Score each candidate on the dataset (hybrid nDCG@10 and friends), record the metrics, and compare with
    the last published evaluation of the alias. Judgments name documents by file name (``guide.md`` ->
    ``guide``). None when no dataset is configured.

    A fine-tuning candidate's run (``parts.min_gain`` set) scores the served version too, side by side with
    the served model's own query path, and publishes only on a gain of at least ``min_gain``."""
    settings = parts.settings
    if not settings.eval.dataset:
        return None
    dataset_path = str(Path(settings.eval.dataset).resolve())
    dataset = load_beir(Path(dataset_path), with_corpus=False)
    alias = settings.index.alias
    searcher = Searcher(settings, parts.embedder, parts.backend)
    judged = sum(1 for q in dataset.queries if dataset.qrels.get(q))

    def record(version: str, scores: dict[str, float]) -> None:
        con.execute(
            "INSERT INTO evaluations VALUES (?, ?, ?, ?, 'hybrid', ?, ?, ?, ?, ?, ?)",
            [
                version,
                alias,
                run_id,
                dataset_path,
                judged,
                scores["ndcg@10"],
                scores["recall@10"],
                scores["recall@100"],
                scores["mrr@10"],
                now(),
            ],
        )

    def gain(candidate: str, served: str | None, min_gain: float) -> Gate:
        base = None
        if served is not None and served != candidate:
            # The served version is queried as users query it: the served settings' own query embedder.
            served_searcher = Searcher(load_settings(settings.home), backend=parts.backend)
            base = score_version(served_searcher, served, dataset, ["hybrid"])[0]["hybrid"]
            record(served, base)
        scores = score_version(searcher, candidate, dataset, ["hybrid"])[0]["hybrid"]
        record(candidate, scores)
        return gain_gate(scores["ndcg@10"], base["ndcg@10"] if base else None, min_gain)

    def gate(candidate: str, served: str | None) -> Gate:
        if parts.min_gain is not None:
            return gain(candidate, served, parts.min_gain)
        metrics, _ = score_version(searcher, candidate, dataset, ["hybrid"])
        scores = metrics["hybrid"]
        baseline = first_row(
            con,
            """SELECT e.ndcg_at_10 FROM evaluations e JOIN runs r ON r.run_id = e.run_id
               WHERE e.alias = ? AND e.dataset = ? AND r.status = 'succeeded'
               ORDER BY e.evaluated_at DESC LIMIT 1""",
            [alias, dataset_path],
        )
        record(candidate, scores)
        return regression_gate(scores["ndcg@10"], baseline[0] if baseline else None, settings.gates.ndcg_tolerance)

    return gate
