"""Rank fusion shared by every backend, so hybrid results agree wherever fusion runs client-side."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from rag_platform.records import Hit


def sort_hits(hits: Sequence[Hit]) -> list[Hit]:
    """Best score first; ties broken by chunk id so results are deterministic."""
    return sorted(hits, key=lambda h: (-h.score, h.chunk_id))


def fuse_ids(
    rankings: Sequence[Sequence[str]],
    k: int,
    rrf_k: int = 60,
    weights: Sequence[float] | None = None,
) -> list[tuple[str, float]]:
    """Weighted RRF over ranked ids: the top ``k`` (id, score) pairs, best first, ties by id;
    score(d) = sum_i w_i / (rrf_k + rank_i(d)), ranks starting at 1."""
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking is required")
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, chunk_id in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (rrf_k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Hit]],
    k: int,
    rrf_k: int = 60,
    weights: Sequence[float] | None = None,
) -> list[Hit]:
    """Fuse ranked hit lists with ``fuse_ids``; each fused hit keeps the fields of its first appearance."""
    first_seen: dict[str, Hit] = {}
    for ranking in rankings:
        for hit in ranking:
            first_seen.setdefault(hit.chunk_id, hit)
    fused = fuse_ids([[hit.chunk_id for hit in ranking] for ranking in rankings], k, rrf_k, weights)
    return [dataclasses.replace(first_seen[chunk_id], score=score) for chunk_id, score in fused]
