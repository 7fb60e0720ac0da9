"""reranked_query_results: the standing queries, answered by the served index and the configured reranker."""

import dagster as dg

from rag_platform.defs.resources import PlatformResource
from rag_platform.standing import run_standing_queries


@dg.asset(
    group_name="query",
    kinds={"python"},
    deps=[dg.AssetKey("search_index")],
    automation_condition=dg.AutomationCondition.eager(),
    description="Top hits, scores and latency of each standing query against the served index, reranked.",
    code_version="1",
)
def reranked_query_results(platform: PlatformResource) -> dg.MaterializeResult:
    report = run_standing_queries(platform.settings())
    return dg.MaterializeResult(
        metadata={
            "results": dg.MetadataValue.md(report.markdown),
            "queries": len(report.queries),
            "p95_latency_ms": report.p95_ms,
            "index_version": report.index_version or "",
        }
    )
