"""The retrieval-quality gate: with ``eval.dataset`` set, every candidate version is scored before the alias
may move, and an nDCG@10 drop beyond ``gates.ndcg_tolerance`` blocks publishing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rag_platform.evaluation import load_beir, regression_gate
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
    ``guide``). None when no dataset is configured."""
    settings = parts.settings
    if not settings.eval.dataset:
        return None
    dataset_path = str(Path(settings.eval.dataset).resolve())
    dataset = load_beir(Path(dataset_path), with_corpus=False)
    alias = settings.index.alias
    searcher = Searcher(settings, parts.embedder, parts.backend)

    def gate(candidate: str, served: str | None) -> Gate:
        metrics, _ = score_version(searcher, candidate, dataset, ["hybrid"])
        scores = metrics["hybrid"]
        baseline = first_row(
            con,
            """SELECT e.ndcg_at_10 FROM evaluations e JOIN runs r ON r.run_id = e.run_id
               WHERE e.alias = ? AND e.dataset = ? AND r.status = 'succeeded'
               ORDER BY e.evaluated_at DESC LIMIT 1""",
            [alias, dataset_path],
        )
        con.execute(
            "INSERT INTO evaluations VALUES (?, ?, ?, ?, 'hybrid', ?, ?, ?, ?, ?, ?)",
            [
                candidate,
                alias,
                run_id,
                dataset_path,
                sum(1 for q in dataset.queries if dataset.qrels.get(q)),
                scores["ndcg@10"],
                scores["recall@10"],
                scores["recall@100"],
                scores["mrr@10"],
                now(),
            ],
        )
        return regression_gate(scores["ndcg@10"], baseline[0] if baseline else None, settings.gates.ndcg_tolerance)

    return gate
