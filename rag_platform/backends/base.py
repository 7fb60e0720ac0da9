"""The index store interface every search backend implements (the factory is ``rag_platform.backends``).

Contract, shared by all backends and checked by ``rag_platform_tests/backends/contract.py``:

- Physical indexes ("versions") are created explicitly and are idempotent to create again.
- Writes are upserts and deletes by ``chunk_id``: writing the same chunk twice leaves one copy; deleting an
  unknown id is a no-op; ``update_metadata`` rewrites a held chunk's provenance fields, not its text or vector.
  A write returns only after the backend acknowledged it; rejected items raise ``BulkWriteError`` naming each
  chunk and reason (nothing is dropped silently).
- ``refresh`` makes acknowledged writes visible to search (and rebuilds keyword statistics over live rows).
- Scores: dense = cosine similarity, keyword = BM25, hybrid = reciprocal rank fusion. Results are ordered by
  score, ties by ``chunk_id``. Filters match exactly on keyword fields (a list means any of).
- An alias names the served version; ``swap_alias`` moves it atomically. Writes made to the served version
  after its last swap stay invisible to searches through the alias until the next ``swap_alias`` (which may
  name the same version), so a refresh killed or blocked before that changes nothing that is served; the
  handle that writes (``open_for_writes``) reads the version's latest state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from rag_platform.records import ChunkMetadata, Hit, IndexedChunk

# Backends fetch this many results beyond ``k``, so ties at the cut are ordered by chunk id, not by chance.
TIE_MARGIN = 16

FILTER_FIELDS = frozenset({"document_id", "source", "document_version", "title", "chunk_id"})

Filters = Mapping[str, str | Sequence[str]]


class FilterError(ValueError):
    """A search filter names an unknown field or has a value that is not a string or a list of strings."""


def validate_filters(filters: Filters | None) -> dict[str, list[str]]:
    """Filters as ``field -> values`` (a list means any of); raises FilterError naming the first problem."""
    checked: dict[str, list[str]] = {}
    for name, value in sorted((filters or {}).items()):
        if name not in FILTER_FIELDS:
            raise FilterError(f"unknown filter field {name!r}; allowed: {', '.join(sorted(FILTER_FIELDS))}")
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list | tuple) or not values or not all(isinstance(v, str) for v in values):
            raise FilterError(f"filter {name!r} must be a string or a non-empty list of strings")
        checked[name] = list(values)
    return checked


class BackendError(RuntimeError):
    """A backend failed in a way the caller should report, not crash on."""


class BackendUnavailable(BackendError):
    """The backend cannot be reached (connection refused, timeout, authentication)."""


class IndexMissing(BackendError):
    """The named index or alias does not exist."""


class BulkWriteError(BackendError):
    def __init__(self, failures: Sequence[tuple[str, str]]):
        self.failures = list(failures)
        shown = "; ".join(f"{cid}: {reason}" for cid, reason in self.failures[:5])
        more = f" (and {len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
        super().__init__(f"{len(self.failures)} chunk(s) rejected by the index: {shown}{more}")


@dataclass(frozen=True, slots=True)
class IndexVersion:
    name: str
    count: int
    served: bool
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class IndexBackend(Protocol):
    kind: str

    def create_version(self, name: str, dim: int, meta: Mapping[str, Any]) -> None: ...

    def upsert(self, name: str, chunks: Sequence[IndexedChunk]) -> int:
        """Write ``chunks`` by id, overwriting existing ones (idempotent re-runs); returns how many."""
        ...

    def update_metadata(self, name: str, updates: Sequence[ChunkMetadata]) -> int:
        """Rewrite the metadata fields of chunks the version holds, keeping their text and vector; returns how
        many. Ids it does not hold raise ``BulkWriteError`` naming them (the others are written)."""
        ...

    def delete(self, name: str, chunk_ids: Sequence[str]) -> int: ...

    def open_for_writes(self, name: str) -> None:
        """From now on this handle reads ``name``'s latest state, unpublished writes included."""
        ...

    def refresh(self, name: str) -> None: ...

    def count(self, name: str) -> int: ...

    def chunk_hashes(self, name: str) -> dict[str, str]:
        """chunk_id -> sha256 of the stored text, for reconciliation and checksums."""
        ...

    def get(self, name: str, chunk_ids: Sequence[str]) -> list[IndexedChunk]: ...

    def search_dense(self, name: str, vector: Sequence[float], k: int, filters: Filters | None = None) -> list[Hit]: ...

    def search_keyword(self, name: str, query: str, k: int, filters: Filters | None = None) -> list[Hit]: ...

    def search_hybrid(
        self,
        name: str,
        query: str,
        vector: Sequence[float],
        k: int,
        filters: Filters | None = None,
        *,
        rrf_k: int = 60,
        candidates: int = 100,
        weights: tuple[float, float] = (1.0, 1.0),
    ) -> list[Hit]:
        """Reciprocal rank fusion of dense and keyword candidates, weighted (dense, keyword)."""
        ...

    def swap_alias(self, alias: str, name: str) -> None: ...

    def resolve_alias(self, alias: str) -> str | None: ...

    def list_versions(self, alias: str) -> list[IndexVersion]: ...

    def drop(self, name: str) -> None: ...

    def close(self) -> None: ...
