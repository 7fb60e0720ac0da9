"""Standing queries: the configured questions, answered by the served index after every refresh."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rag_platform.search_request import SearchRequest

if TYPE_CHECKING:
    from rag_platform.retrieval import Searcher


@dataclass(frozen=True, slots=True)
class StandingReport:
    queries: tuple[dict[str, Any], ...]
    index_version: str | None

    @property
    def p95_ms(self) -> float:
        latencies = sorted(q["took_ms"] for q in self.queries)
        if not latencies:
            return 0.0
        return float(latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))])

    @property
    def markdown(self) -> str:
        lines = ["| query | rank | score | source | reranked | ms |", "|---|---|---|---|---|---|"]
        for q in self.queries:
            for hit in q["results"]:
                reranked = hit["reranked"]["provider"] if hit["reranked"]["applied"] else "no"
                cells = [q["query"], hit["rank"], f"{hit['score']:.4f}", hit["source"], reranked, f"{q['took_ms']:.1f}"]
                lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        return "\n".join(lines)


def run_standing_queries(searcher: Searcher) -> StandingReport:
    """Run every ``queries.standing`` entry in hybrid mode with the configured reranker."""
    settings = searcher.settings
    answers = [
        searcher.search(SearchRequest(query=q, k=settings.queries.k, mode="hybrid")) for q in settings.queries.standing
    ]
    version = answers[0]["index_version"] if answers else None
    return StandingReport(tuple(answers), version)
