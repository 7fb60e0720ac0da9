"""Retrieval over the served index: validate a request, embed the query, search, rerank, shape the answer.

``Searcher`` is built once per process (CLI call, API server, standing queries) and reused: the embedder and
backend inside it load lazily and are safe to share between threads.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from rag_platform.backends import IndexBackend, IndexMissing, make_backend
from rag_platform.embedding import Embedder, cached_query_embedder
from rag_platform.records import Hit
from rag_platform.reranking import rerank_hits
from rag_platform.search_request import MODES, RERANKERS, SearchInputError, SearchRequest

if TYPE_CHECKING:
    from rag_platform.config import Settings

logger = logging.getLogger("rag_platform.retrieval")

__all__ = ["MODES", "RERANKERS", "NoServedIndex", "SearchInputError", "SearchRequest", "Searcher"]


class NoServedIndex(IndexMissing):
    """No index version is served yet."""


# Candidates per requested result when results are grouped by document: enough for documents with many
# matching chunks to still fill k results in the common case.
GROUP_DEPTH_FACTOR = 5


def best_per_document(hits: list[Hit]) -> list[Hit]:
    """The first (best-ranked) hit of each document, in rank order."""
    seen: set[str] = set()
    kept = []
    for hit in hits:
        if hit.document_id not in seen:
            seen.add(hit.document_id)
            kept.append(hit)
    return kept


class Searcher:
    def __init__(self, settings: Settings, embedder: Embedder | None = None, backend: IndexBackend | None = None):
        self.settings = settings
        self._embedder = embedder
        self._backend = backend
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Searcher:
        return cls(settings)

    @property
    def backend(self) -> IndexBackend:
        with self._lock:
            if self._backend is None:
                self._backend = make_backend(self.settings)
            return self._backend

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                # The light query path (ONNX Runtime and the tokenizer only) unless the caller shares its own.
                self._embedder = cached_query_embedder(self.settings.embedding, self.settings.cache_dir)
            return self._embedder

    def warm(self) -> None:
        """Load the query embedder and open the served index now, so the first request does not pay for it
        (``serve`` calls this before it starts listening). A part that cannot load yet (no index, a backend
        that is down) is left for the requests to report, as they would without warming."""
        self.embedder.embed(["warm up"])
        try:
            version = self.backend.resolve_alias(self.settings.index.alias)
            if version is not None:
                self.backend.count(version)
        except Exception as exc:
            logger.warning("index backend not ready (%s); searches will report it", str(exc).splitlines()[0:1])

    def served_version(self) -> str:
        version = self.backend.resolve_alias(self.settings.index.alias)
        if version is None:
            raise NoServedIndex("no index has been built yet; run rag-platform refresh --source DIR")
        return version

    def retrieve(self, request: SearchRequest, version: str, depth: int) -> tuple[list[Hit], dict[str, float]]:
        """Candidate hits (``depth`` of them) and timings in ms: embed and search."""
        timings = {"embed": 0.0, "search": 0.0}
        vector: Any = None
        if request.mode != "keyword":
            started = time.perf_counter()
            vector = self.embedder.embed([request.query])[0]
            timings["embed"] = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        filters = request.filters
        if request.mode == "dense":
            hits = self.backend.search_dense(version, vector, depth, filters)
        elif request.mode == "keyword":
            hits = self.backend.search_keyword(version, request.query, depth, filters)
        else:
            hits = self.backend.search_hybrid(
                version,
                request.query,
                vector,
                depth,
                filters,
                rrf_k=self.settings.index.rrf_k,
                candidates=self.settings.index.candidates,
                weights=(1.0, self.settings.index.keyword_weight),
            )
        timings["search"] = (time.perf_counter() - started) * 1000
        return hits, timings

    def search(self, request: SearchRequest) -> dict[str, Any]:
        """The contract's search answer for one request."""
        started = time.perf_counter()
        request = request.validated(self.settings)
        version = self.served_version()
        depth = max(request.k, self.settings.rerank.candidates) if request.rerank != "none" else request.k
        keep = request.k
        if request.group_by_document:
            depth = keep = max(depth, request.k * GROUP_DEPTH_FACTOR)
        hits, timings = self.retrieve(request, version, depth)
        reranked_started = time.perf_counter()
        hits, rerank_info = rerank_hits(request.rerank or "none", request.query, hits, keep, self.settings)
        timings["rerank"] = (time.perf_counter() - reranked_started) * 1000
        if request.group_by_document:
            hits = best_per_document(hits)
        results = [
            {
                "rank": rank,
                "chunk_id": hit.chunk_id,
                "document_id": hit.document_id,
                "source": hit.source,
                "title": hit.title,
                "text": hit.text,
                "score": hit.score,
                "document_version": hit.document_version,
                "index_version": version,
                "run_id": hit.run_id,
                "reranked": rerank_info,
            }
            for rank, hit in enumerate(hits[: request.k], start=1)
        ]
        return {
            "query": request.query,
            "mode": request.mode,
            "group_by_document": request.group_by_document,
            "index_version": version,
            "took_ms": round((time.perf_counter() - started) * 1000, 3),
            "timings_ms": {name: round(value, 3) for name, value in timings.items()},
            "results": results,
        }
