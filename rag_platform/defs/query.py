"""Assets downstream of the served index: the standing queries (reranked) and the retrieval evaluation."""

import dagster as dg

from rag_platform.answering import answer_standing
from rag_platform.defs.resources import PlatformResource
from rag_platform.lineage import latest_evaluation
from rag_platform.retrieval import Searcher
from rag_platform.standing import run_standing_queries

# Re-run when the served index changes, and only when its blocking checks passed: Dagster's blocking checks
# stop downstream steps within a run, this stops automation from picking up a blocked index afterwards.
AFTER_SERVED_INDEX = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()


@dg.asset(
    group_name="query",
    kinds={"python"},
    deps=[dg.AssetKey("search_index")],
    automation_condition=AFTER_SERVED_INDEX,
    description="Top hits, scores and latency of each standing query against the served index, reranked.",
    code_version="1",
)
def reranked_query_results(platform: PlatformResource) -> dg.MaterializeResult:
    parts = platform.parts
    searcher = Searcher(parts.settings, parts.embedder, parts.backend)
    report = run_standing_queries(searcher)
    answers = answer_standing(searcher)
    return dg.MaterializeResult(
        metadata={
            "results": dg.MetadataValue.md(report.markdown),
            "queries": len(report.queries),
            "p95_latency_ms": report.p95_ms,
            "index_version": report.index_version or "",
            "answers": dg.MetadataValue.md(answers.markdown),
            "answers_abstained": answers.abstained,
        }
    )


@dg.asset(
    group_name="quality",
    kinds={"python"},
    deps=[dg.AssetKey("search_index")],
    automation_condition=AFTER_SERVED_INDEX,
    description=(
        "Retrieval quality of the served index on the configured evaluation set (eval.dataset): nDCG@10, "
        "Recall@10/@100 and MRR@10 as metadata, so the UI plots them over index versions."
    ),
    code_version="1",
)
def retrieval_evaluation(platform: PlatformResource) -> dg.MaterializeResult:
    evaluation = latest_evaluation(platform.parts.settings)
    if evaluation is None:
        return dg.MaterializeResult(metadata={"status": "not evaluated: set eval.dataset to score every version"})
    return dg.MaterializeResult(
        metadata={
            "ndcg_at_10": dg.MetadataValue.float(evaluation["ndcg_at_10"]),
            "recall_at_10": dg.MetadataValue.float(evaluation["recall_at_10"]),
            "recall_at_100": dg.MetadataValue.float(evaluation["recall_at_100"]),
            "mrr_at_10": dg.MetadataValue.float(evaluation["mrr_at_10"]),
            "queries": evaluation["queries"],
            "index_version": evaluation["index_name"],
            "dataset": evaluation["dataset"],
        }
    )
