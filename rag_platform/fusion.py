"""Rank fusion shared by every backend, so hybrid results agree wherever fusion runs client-side."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from rag_platform.records import Hit


def sort_hits(hits: Sequence[Hit]) -> list[Hit]:
    """Best score first; ties broken by chunk id so results are deterministic."""
    return sorted(hits, key=lambda h: (-h.score, h.chunk_id))


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Hit]],
    k: int,
    rrf_k: int = 60,
    weights: Sequence[float] | None = None,
) -> list[Hit]:
    """Fuse ranked lists: score(d) = sum_i w_i / (rrf_k + rank_i(d)), ranks starting at 1."""
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking is required")
    scores: dict[str, float] = {}
    first_seen: dict[str, Hit] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + weight / (rrf_k + rank)
            first_seen.setdefault(hit.chunk_id, hit)
    fused = [dataclasses.replace(first_seen[cid], score=score) for cid, score in scores.items()]
    return sort_hits(fused)[:k]
