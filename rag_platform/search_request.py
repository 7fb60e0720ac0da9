"""A search request and its validation: the one definition of the search modes, rerank providers, ``k``
bounds and filters that the CLI, the API and retrieval share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

from rag_platform.backends import FilterError, validate_filters

if TYPE_CHECKING:
    from rag_platform.config import Settings

SearchMode = Literal["hybrid", "dense", "keyword"]
RerankProvider = Literal["none", "cohere", "cross-encoder"]
MODES: tuple[str, ...] = get_args(SearchMode)
RERANKERS: tuple[str, ...] = get_args(RerankProvider)


class SearchInputError(ValueError):
    """A client mistake in a search request; ``code`` is the API error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class SearchRequest:
    query: str
    k: int = 10
    mode: str = "hybrid"
    rerank: str | None = None
    filters: Mapping[str, str | Sequence[str]] | None = field(default=None)
    group_by_document: bool = False  # at most one result per document: its best chunk

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
        try:
            filters = validate_filters(self.filters)
        except FilterError as exc:
            raise SearchInputError("validation_error", str(exc)) from None
        if not isinstance(self.group_by_document, bool):
            raise SearchInputError("validation_error", "group_by_document must be true or false")
        return SearchRequest(self.query.strip(), self.k, self.mode, rerank, filters or None, self.group_by_document)
