"""Retrieval over the served index: validate a request, embed the query, search, rerank, shape the answer.

``Searcher`` is built once per process (CLI call, API server, standing queries) and reused: the embedder and
backend inside it load lazily and are safe to share between threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rag_platform.backends import FILTER_FIELDS, IndexBackend, IndexMissing, make_backend
from rag_platform.records import Hit

if TYPE_CHECKING:
    from rag_platform.config import Settings
    from rag_platform.embedding import Embedder

MODES = ("hybrid", "dense", "keyword")
RERANKERS = ("none", "cohere", "cross-encoder")


class SearchInputError(ValueError):
    """A client mistake in a search request; ``code`` is the API error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class NoServedIndex(IndexMissing):
    """No index version is served yet."""


@dataclass(frozen=True, slots=True)
class SearchRequest:
    query: str
    k: int = 10
    mode: str = "hybrid"
    rerank: str | None = None
    filters: Mapping[str, str | Sequence[str]] | None = field(default=None)

    def validated(self, settings: Settings) -> SearchRequest:
        """The request with defaults applied; raises SearchInputError naming the first problem."""
        if not isinstance(self.query, str) or not self.query.strip():
            raise SearchInputError("validation_error", "query must be a non-empty string")
        if len(self.query) > settings.api.max_query_chars:
            raise SearchInputError(
                "validation_error", f"query is longer than {settings.api.max_query_chars} characters"
            )
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= settings.api.max_k:
            raise SearchInputError("validation_error", f"k must be an integer between 1 and {settings.api.max_k}")
        if self.mode not in MODES:
            raise SearchInputError("validation_error", f"mode must be one of {', '.join(MODES)}")
        rerank = self.rerank or settings.rerank.provider
        if rerank not in RERANKERS:
            raise SearchInputError("validation_error", f"rerank must be one of {', '.join(RERANKERS)}")
        filters: dict[str, list[str]] = {}
        for name, value in (self.filters or {}).items():
            if name not in FILTER_FIELDS:
                raise SearchInputError(
                    "validation_error", f"unknown filter field {name!r}; allowed: {', '.join(sorted(FILTER_FIELDS))}"
                )
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list | tuple) or not values or not all(isinstance(v, str) for v in values):
                raise SearchInputError("validation_error", f"filter {name!r} must be a string or a list of strings")
            filters[name] = list(values)
        return SearchRequest(self.query.strip(), self.k, self.mode, rerank, filters or None)


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
                from rag_platform.refresh import cached_embedder

                self._embedder = cached_embedder(self.settings.embedding, self.settings.cache_dir)
            return self._embedder

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
        from rag_platform.reranking import rerank_hits

        started = time.perf_counter()
        request = request.validated(self.settings)
        version = self.served_version()
        depth = max(request.k, self.settings.rerank.candidates) if request.rerank != "none" else request.k
        hits, timings = self.retrieve(request, version, depth)
        reranked_started = time.perf_counter()
        hits, rerank_info = rerank_hits(request.rerank or "none", request.query, hits, request.k, self.settings)
        timings["rerank"] = (time.perf_counter() - reranked_started) * 1000
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
            "index_version": version,
            "took_ms": round((time.perf_counter() - started) * 1000, 3),
            "timings_ms": {name: round(value, 3) for name, value in timings.items()},
            "results": results,
        }
