"""Rerankers behind one interface: none, Cohere Rerank, a local cross-encoder.

A reranker that fails, times out or is not configured never fails the search: the hits come back in their
retrieval order with ``reranked.applied = false`` and the reason.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from rag_platform.cohere_api import CohereService
from rag_platform.records import Hit

if TYPE_CHECKING:
    from rag_platform.config import Settings


class RerankUnavailable(RuntimeError):
    """The reranker cannot run (not configured, unreachable, timed out); the message says why."""


class Reranker(Protocol):
    name: str

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        """The best ``k`` hits, rescored by the reranker, best first (ties by chunk id)."""
        ...


class NoneReranker:
    name = "none"

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        return list(hits)[:k]


def _rescored(hits: Sequence[Hit], scores: dict[int, float], k: int) -> list[Hit]:
    ranked = sorted(scores.items(), key=lambda item: (-item[1], hits[item[0]].chunk_id))
    return [dataclasses.replace(hits[i], score=float(score)) for i, score in ranked[:k]]


class CohereReranker(CohereService):
    """Cohere Rerank via the cohere SDK; ``http_client`` lets tests replay recorded exchanges."""

    name = "cohere"
    unavailable = RerankUnavailable
    default_timeout_s = 10.0

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        if not hits:
            return []
        client = self._sdk()
        try:
            response = client.rerank(
                model=self.model,
                query=query,
                documents=[h.text for h in hits],
                top_n=min(k, len(hits)),
                request_options={"max_retries": self.max_retries, "timeout_in_seconds": int(self.timeout_s) or 1},
            )
        except Exception as exc:
            raise RerankUnavailable(f"cohere rerank failed: {type(exc).__name__}: {str(exc)[:200]}") from exc
        return _rescored(hits, {r.index: r.relevance_score for r in response.results}, k)


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder loaded from a local path, on first use."""

    name = "cross-encoder"

    def __init__(self, path: str):
        self.path = path
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if not self.path:
            raise RerankUnavailable("rerank.cross_encoder_path is not configured")
        if not os.path.isdir(self.path):
            raise RerankUnavailable(f"cross-encoder path {self.path} does not exist")
        with self._lock:
            if self._model is None:
                from sentence_transformers import CrossEncoder

                try:
                    self._model = CrossEncoder(self.path, device="cpu")
                except Exception as exc:
                    raise RerankUnavailable(f"cannot load cross-encoder: {exc}") from exc
            return self._model

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        if not hits:
            return []
        model = self._load()
        scores = model.predict([(query, h.text) for h in hits], show_progress_bar=False)
        return _rescored(hits, {i: float(s) for i, s in enumerate(scores)}, k)


@functools.lru_cache(maxsize=8)
def _cached_reranker(provider: str, model: str, path: str, timeout_s: float) -> Reranker:
    if provider == "cohere":
        return CohereReranker(model, os.environ.get("COHERE_API_KEY"), timeout_s)
    if provider == "cross-encoder":
        return CrossEncoderReranker(path)
    return NoneReranker()


def make_reranker(provider: str, settings: Settings) -> Reranker:
    r = settings.rerank
    return _cached_reranker(provider, r.cohere_model, r.cross_encoder_path, r.timeout_s)


def rerank_hits(
    provider: str, query: str, hits: Sequence[Hit], k: int, settings: Settings, reranker: Reranker | None = None
) -> tuple[list[Hit], dict[str, Any]]:
    """Rerank with the provider, or fall back to retrieval order with the reason; returns (hits, info)."""
    if provider == "none":
        return list(hits)[:k], {"applied": False, "provider": "none", "reason": "reranking disabled"}
    try:
        ranked = (reranker or make_reranker(provider, settings)).rerank(query, hits, k)
    except RerankUnavailable as exc:
        return list(hits)[:k], {"applied": False, "provider": provider, "reason": str(exc)}
    return ranked, {"applied": True, "provider": provider, "reason": None}
