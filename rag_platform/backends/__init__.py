"""Index stores: where chunks and vectors are served from (LanceDB embedded by default, Elasticsearch in
production), behind one interface (``rag_platform.backends.base``), and the factory that picks one."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from rag_platform.backends.base import (
    FILTER_FIELDS,
    TIE_MARGIN,
    BackendError,
    BackendUnavailable,
    BulkWriteError,
    FilterError,
    Filters,
    IndexBackend,
    IndexMissing,
    IndexVersion,
    validate_filters,
)

if TYPE_CHECKING:
    from rag_platform.config import Settings

__all__ = [
    "FILTER_FIELDS",
    "TIE_MARGIN",
    "BackendError",
    "BackendUnavailable",
    "BulkWriteError",
    "FilterError",
    "Filters",
    "IndexBackend",
    "IndexMissing",
    "IndexVersion",
    "make_backend",
    "validate_filters",
]


def make_backend(settings: Settings) -> IndexBackend:
    """Build the configured backend; Elasticsearch when ``RAG_ES_URL`` is set or configured."""
    if settings.index.backend == "elasticsearch" or os.environ.get("RAG_ES_URL"):
        from rag_platform.backends.elasticsearch import ElasticsearchBackend

        return ElasticsearchBackend.from_env(settings)
    from rag_platform.backends.lancedb import LanceDBBackend

    return LanceDBBackend(settings.index_dir, ann_min_rows=settings.index.ann_min_rows)
