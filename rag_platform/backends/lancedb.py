"""The embedded default backend: one LanceDB table per index version, aliases in an atomic JSON catalog.

An alias pins the table version it was last swapped to: writes made to a served table afterwards (an
incremental refresh) stay invisible to every reader until ``swap_alias`` moves the pin, so a refresh that is
killed or blocked by a gate never changes what is served. The handle that writes a table (``open_for_writes``,
``upsert``, ``delete``) reads that table's latest state, its own writes included.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag_platform.backends.base import (
    TIE_MARGIN,
    BackendError,
    BulkWriteError,
    Filters,
    IndexMissing,
    IndexVersion,
    validate_filters,
)
from rag_platform.fusion import fuse_ids, sort_hits
from rag_platform.records import METADATA_FIELDS, ChunkMetadata, Hit, IndexedChunk, sha256_hex

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_DELETE_BATCH = 500
_COLUMNS = ("chunk_id", "document_id", "source", "title", "text", "heading_path", "document_version", "run_id")


Ranked = tuple[str, float, int]
"""A search candidate: chunk id, score and the row id that locates it in the searched table version."""


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def where_clause(filters: Filters | None) -> str | None:
    """SQL predicate for exact-match filters; a list means any of. Unknown fields are an error."""
    checked = validate_filters(filters)
    if not checked:
        return None
    return " AND ".join(f"{name} IN ({', '.join(_quote(v) for v in values)})" for name, values in checked.items())


def dense_reach(k: int, rrf_k: int, weights: tuple[float, float]) -> int:
    """How many leading dense candidates can end in the weighted-RRF top ``k`` of (dense, keyword) rankings; 0 when
    keyword alone can carry a hit in, or when more than ``2 * k`` could. Once the dense list holds ``k`` hits, a
    hit needs at least the k-th dense share less the largest keyword share: ``wd/(rrf_k+k) - wk/(rrf_k+1)``."""
    dense, keyword = weights
    floor = dense / (rrf_k + k) - max(keyword, 0.0) / (rrf_k + 1)
    if dense <= 0 or floor <= 0:
        return 0
    reach = math.floor(dense / floor) - rrf_k  # dense / (rrf_k + rank) >= floor
    return reach if reach <= 2 * k else 0


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One table version as searches read it: a handle pinned to that version, its row ids (ascending) and the
    chunk id of each row, plus the rows' unit vectors for exact search (None when the table is searched by ANN).
    Candidate lists and row reads of one search all use the same snapshot, so row ids stay valid throughout."""

    version: int
    table: Any
    row_ids: np.ndarray
    chunk_ids: Any  # pyarrow StringArray, aligned with row_ids
    vectors: np.ndarray | None

    def ranked(self, row_ids: Sequence[int], scores: Sequence[float]) -> list[Ranked]:
        """(chunk id, score, row id) for row ids this version returned."""
        wanted = np.asarray(row_ids, dtype=np.uint64)
        at = np.searchsorted(self.row_ids, wanted)
        if len(at) and (at.max() >= len(self.row_ids) or not np.array_equal(self.row_ids[at], wanted)):
            raise BackendError(f"row ids outside table version {self.version}")
        return self.at(at, scores)

    def at(self, positions: np.ndarray, scores: Sequence[float]) -> list[Ranked]:
        """(chunk id, score, row id) for row positions in this snapshot."""
        ids = self.chunk_ids.take(positions).to_pylist()
        return list(zip(ids, map(float, scores), map(int, self.row_ids[positions]), strict=True))


class LanceDBBackend:
    """Embedded search index. Exact (flat) kNN below ``ann_min_rows`` rows, an IVF-PQ index above."""

    kind = "lancedb"

    def __init__(self, root: Path, ann_min_rows: int = 50_000):
        self.root = Path(root)
        self.ann_min_rows = ann_min_rows
        self._db: Any = None
        self._tables: dict[str, Any] = {}
        self._snapshots: dict[str, _Snapshot] = {}
        self._pinned: dict[str, Any] = {}  # read handles at the version an alias pins
        self._writing: set[str] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.RLock()

    # ---- plumbing ------------------------------------------------------------------------------------

    def _connect(self) -> Any:
        with self._lock:
            if self._db is None:
                # Lance reserves two cores for I/O and runs compute on the rest, on one thread where that leaves
                # fewer: the keyword and vector halves of a hybrid search would queue for it. A default only.
                if (os.cpu_count() or 1) < 4:
                    os.environ.setdefault("LANCE_CPU_THREADS", "2")
                import lancedb

                self.root.mkdir(parents=True, exist_ok=True)
                self._db = lancedb.connect(str(self.root))
            return self._db

    def _table_names(self) -> set[str]:
        result = self._connect().list_tables()
        names = getattr(result, "tables", None)
        return set(names if names is not None else result)

    def _table(self, name: str) -> Any:
        """The table's handle for writes, moved to the latest version (another process may have written)."""
        self._check_name(name)
        with self._lock:
            table = self._tables.get(name)
            if table is None:
                if name not in self._table_names():
                    raise IndexMissing(f"index {name!r} does not exist")
                table = self._connect().open_table(name)
                self._tables[name] = table
            else:
                table.checkout_latest()
            return table

    def _pin(self, name: str) -> int | None:
        """The table version readers see (pinned by an alias), or None to read the latest."""
        if name in self._writing:
            return None
        pin = self._catalog().get("pins", {}).get(name)
        return int(pin) if pin is not None else None

    def _read_table(self, name: str) -> Any:
        """A handle at the version this handle's reads see (see the module docstring)."""
        pin = self._pin(name)
        if pin is None:
            return self._table(name)
        with self._lock:
            table = self._pinned.get(name)
            if table is None or int(table.version) != pin:
                self._check_name(name)
                table = self._connect().open_table(name)
                table.checkout(pin)
                self._pinned[name] = table
            return table

    def open_for_writes(self, name: str) -> None:
        self._check_name(name)
        with self._lock:
            self._writing.add(name)

    @staticmethod
    def _check_name(name: str) -> None:
        if not _NAME.match(name):
            raise BackendError(f"invalid index name {name!r}")

    @property
    def _catalog_path(self) -> Path:
        return self.root / "catalog.json"

    def _catalog(self) -> dict[str, Any]:
        try:
            return json.loads(self._catalog_path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
        except FileNotFoundError:
            return {"aliases": {}, "versions": {}}

    def _write_catalog(self, catalog: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self._catalog_path.with_name(f"catalog.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(catalog, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self._catalog_path)

    # ---- writes --------------------------------------------------------------------------------------

    def create_version(self, name: str, dim: int, meta: Mapping[str, Any]) -> None:
        import pyarrow as pa

        self._check_name(name)
        schema = pa.schema(
            [(column, pa.string()) for column in _COLUMNS]
            + [("text_sha256", pa.string()), ("vector", pa.list_(pa.float32(), dim))]
        )
        with self._lock:
            self._connect().create_table(name, schema=schema, exist_ok=True)
            catalog = self._catalog()
            catalog["versions"].setdefault(name, {**dict(meta), "dim": dim})
            self._write_catalog(catalog)
            self._writing.add(name)

    def upsert(self, name: str, chunks: Sequence[IndexedChunk]) -> int:
        if not chunks:
            return 0
        import pyarrow as pa

        self.open_for_writes(name)
        table = self._table(name)
        rows = {c.chunk_id: c for c in chunks}  # the last write of an id wins, as in a sequence of upserts
        dim = table.schema.field("vector").type.list_size
        if any(len(c.vector) != dim for c in rows.values()):
            raise BackendError(f"index {name!r} holds vectors of {dim} dimensions; got others")
        vectors = np.asarray([c.vector for c in rows.values()], dtype=np.float32).reshape(-1)
        columns: dict[str, Any] = {column: [getattr(c, column) for c in rows.values()] for column in _COLUMNS}
        columns["text_sha256"] = [sha256_hex(c.text) for c in rows.values()]
        columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors), dim)
        data = pa.Table.from_pydict(columns, schema=table.schema)
        with self._lock:
            table.merge_insert("chunk_id").when_matched_update_all().when_not_matched_insert_all().execute(data)
        return len(rows)

    def update_metadata(self, name: str, updates: Sequence[ChunkMetadata]) -> int:
        if not updates:
            return 0
        import pyarrow as pa

        self.open_for_writes(name)
        table = self._table(name)
        rows = {u.chunk_id: u for u in updates}
        columns = ("chunk_id", *METADATA_FIELDS)
        data = pa.table({column: [getattr(u, column) for u in rows.values()] for column in columns})
        with self._lock:
            # Only the given columns are rewritten: text, hash and vector stay as stored. Unknown ids match
            # nothing and insert nothing.
            result = table.merge_insert("chunk_id").when_matched_update_all().execute(data)
        if int(result.num_updated_rows) != len(rows):
            held = {c.chunk_id for c in self.get(name, list(rows))}
            raise BulkWriteError([(cid, "not in the index") for cid in sorted(set(rows) - held)])
        return len(rows)

    def delete(self, name: str, chunk_ids: Sequence[str]) -> int:
        self.open_for_writes(name)
        table = self._table(name)
        ids = sorted(set(chunk_ids))
        with self._lock:
            for start in range(0, len(ids), _DELETE_BATCH):
                batch = ids[start : start + _DELETE_BATCH]
                table.delete(f"chunk_id IN ({', '.join(_quote(i) for i in batch)})")
        return len(ids)

    def refresh(self, name: str) -> None:
        """Bring the indexes up to date with the rows written since the last refresh; create the full-text and
        chunk id indexes on first use, and the ANN index once the table is large."""
        table = self._table(name)
        with self._lock:
            rows = table.count_rows()
            types = {i.index_type.upper() for i in table.list_indices()}
            if rows:
                # Merges the small fragments that batched writes leave, drops deleted rows, and adds the new rows
                # to every existing index (no retraining, no full rebuild): a refresh costs what changed. Versions
                # a reader may still be on are kept (the default cleanup age is a week).
                table.optimize()
                if "FTS" not in types:
                    table.create_fts_index("text", replace=True, use_tantivy=False, with_position=False)
                if "BTREE" not in types:
                    table.create_scalar_index("chunk_id", replace=True)  # row lookups by id stay fast
            if rows >= self.ann_min_rows and not any(t.startswith("IVF") for t in types):  # e.g. "IvfPq"
                table.create_index(metric="cosine", vector_column_name="vector", replace=True)

    # ---- reads ---------------------------------------------------------------------------------------

    def count(self, name: str) -> int:
        return int(self._read_table(name).count_rows())

    def chunk_hashes(self, name: str) -> dict[str, str]:
        table = self._read_table(name)
        data = table.search().select(["chunk_id", "text_sha256"]).limit(None).to_arrow()
        return dict(zip(data["chunk_id"].to_pylist(), data["text_sha256"].to_pylist(), strict=True))

    def get(self, name: str, chunk_ids: Sequence[str]) -> list[IndexedChunk]:
        ids = sorted(set(chunk_ids))
        if not ids:
            return []
        table = self._read_table(name)
        found: list[IndexedChunk] = []
        for start in range(0, len(ids), _DELETE_BATCH):
            batch = ids[start : start + _DELETE_BATCH]
            data = (
                table.search()
                .where(f"chunk_id IN ({', '.join(_quote(i) for i in batch)})")
                .limit(None)
                .to_arrow()
                .to_pylist()
            )
            found.extend(
                IndexedChunk(**{column: row[column] for column in _COLUMNS}, vector=list(row["vector"])) for row in data
            )
        return sorted(found, key=lambda c: c.chunk_id)

    def _hits(self, rows: list[dict[str, Any]], score: Any) -> list[Hit]:
        return [
            Hit(
                chunk_id=row["chunk_id"],
                document_id=row["document_id"],
                source=row["source"],
                title=row["title"],
                text=row["text"],
                document_version=row["document_version"],
                score=float(score(row)),
                run_id=row["run_id"],
                heading_path=row["heading_path"],
            )
            for row in rows
        ]

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lancedb-search")
            return self._executor

    def _snapshot(self, name: str) -> _Snapshot:
        """The version of a table this handle reads, for searching; reloaded only when the version changes."""
        pin = self._pin(name)
        version = int(self._table(name).version) if pin is None else pin
        with self._lock:
            cached = self._snapshots.get(name)
            if cached is not None and cached.version == version:
                return cached
            table = self._connect().open_table(name)
            table.checkout(version)
            exact = table.count_rows() < self.ann_min_rows
            columns = ["chunk_id", "vector"] if exact else ["chunk_id"]
            data = table.search().select(columns).with_row_id(True).limit(None).to_arrow()
            row_ids = data["_rowid"].to_numpy().astype(np.uint64)
            order = np.argsort(row_ids, kind="stable")
            vectors = None
            if exact:
                column = data["vector"].combine_chunks()
                vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, column.type.list_size)
                vectors = vectors[order].astype(np.float32)
                vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            snapshot = _Snapshot(version, table, row_ids[order], data["chunk_id"].combine_chunks().take(order), vectors)
            self._snapshots[name] = snapshot
            return snapshot

    @staticmethod
    def _exact_dense(snapshot: _Snapshot, vectors: np.ndarray, vector: Sequence[float], fetch: int) -> list[Ranked]:
        query = np.asarray(vector, dtype=np.float32)
        scores = vectors @ (query / max(float(np.linalg.norm(query)), 1e-12))
        rows = len(scores)
        top = np.argpartition(-scores, fetch - 1)[:fetch] if rows > fetch else np.arange(rows)
        return snapshot.at(top, scores[top])

    @staticmethod
    def _rows(snapshot: _Snapshot, ranked: Sequence[Ranked]) -> dict[str, dict[str, Any]]:
        """Stored fields of ranked candidates, by chunk id."""
        if not ranked:
            return {}
        data = snapshot.table.take_row_ids([row for _, _, row in ranked]).select(list(_COLUMNS)).to_arrow()
        return {row["chunk_id"]: row for row in data.to_pylist()}

    def _hydrate(
        self, snapshot: _Snapshot, ranked: Sequence[Ranked], read: Mapping[str, dict[str, Any]] | None = None
    ) -> list[Hit]:
        """Hits with their stored fields, for ranked candidates, in score order (ties by chunk id). Rows in
        ``read`` were read already; only the others are taken from the table."""
        rows = dict(read or {})
        rows.update(self._rows(snapshot, [item for item in ranked if item[0] not in rows]))
        score = {cid: value for cid, value, _ in ranked}
        return sort_hits(self._hits([rows[cid] for cid in score], lambda r: score[r["chunk_id"]]))

    def _dense_ids(
        self, snapshot: _Snapshot, vector: Sequence[float], fetch: int, filters: Filters | None
    ) -> list[Ranked]:
        where = where_clause(filters)
        if snapshot.vectors is not None and where is None:
            return self._exact_dense(snapshot, snapshot.vectors, vector, fetch)
        query = snapshot.table.search(list(map(float, vector)), vector_column_name="vector").metric("cosine")
        if snapshot.vectors is not None:
            query = query.bypass_vector_index()
        if where:
            query = query.where(where, prefilter=True)
        data = query.select(["_distance"]).with_row_id(True).limit(fetch).to_arrow()
        return snapshot.ranked(data["_rowid"].to_pylist(), [1.0 - d for d in data["_distance"].to_pylist()])

    def _keyword_ids(self, snapshot: _Snapshot, query: str, fetch: int, filters: Filters | None) -> list[Ranked]:
        where = where_clause(filters)
        if not query.strip() or not len(snapshot.row_ids):
            return []
        search = snapshot.table.search(query, query_type="fts", fts_columns="text")
        if where:
            search = search.where(where, prefilter=True)
        try:
            data = search.select(["_score"]).with_row_id(True).limit(fetch).to_arrow()
        except (ValueError, RuntimeError) as exc:
            if "index" in str(exc).lower():
                raise BackendError(f"index {snapshot.table.name!r} has no full-text index yet; run a refresh") from None
            raise
        return snapshot.ranked(data["_rowid"].to_pylist(), data["_score"].to_pylist())

    @staticmethod
    def _top(ranked: Sequence[Ranked], k: int) -> list[Ranked]:
        return sorted(ranked, key=lambda item: (-item[1], item[0]))[:k]

    def search_dense(self, name: str, vector: Sequence[float], k: int, filters: Filters | None = None) -> list[Hit]:
        snapshot = self._snapshot(name)
        return self._hydrate(snapshot, self._top(self._dense_ids(snapshot, vector, k + TIE_MARGIN, filters), k))

    def search_keyword(self, name: str, query: str, k: int, filters: Filters | None = None) -> list[Hit]:
        snapshot = self._snapshot(name)
        return self._hydrate(snapshot, self._top(self._keyword_ids(snapshot, query, k + TIE_MARGIN, filters), k))

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
        """Fusion over ids and scores first; rows are read only for the fused top ``k`` (and, while the keyword
        search runs, for the dense candidates that can reach it)."""
        snapshot = self._snapshot(name)
        depth = max(candidates, k)
        # Both candidate lists at once: LanceDB and numpy release the GIL while they search. The (slower) keyword
        # search also hides reading the rows of the dense candidates that can still make the fused top k.
        keyword = self._pool().submit(self._keyword_ids, snapshot, query, depth + TIE_MARGIN, filters)
        dense = self._top(self._dense_ids(snapshot, vector, depth + TIE_MARGIN, filters), depth)
        read = self._rows(snapshot, dense[: dense_reach(k, rrf_k, weights)])
        lexical = self._top(keyword.result(), depth)
        fused = fuse_ids([[cid for cid, _, _ in ranked] for ranked in (dense, lexical)], k, rrf_k, weights)
        row = {cid: row for cid, _, row in dense + lexical}
        return self._hydrate(snapshot, [(cid, score, row[cid]) for cid, score in fused], read)

    # ---- versions and aliases ------------------------------------------------------------------------

    def swap_alias(self, alias: str, name: str) -> None:
        """Serve ``name`` under ``alias`` as it is now (its latest version is pinned); swapping to the served
        table again publishes the writes made since."""
        version = int(self._table(name).version)  # must exist
        with self._lock:
            catalog = self._catalog()
            catalog["aliases"][alias] = name
            catalog.setdefault("pins", {})[name] = version
            self._write_catalog(catalog)
            self._writing.discard(name)

    def resolve_alias(self, alias: str) -> str | None:
        return self._catalog()["aliases"].get(alias)  # type: ignore[no-any-return]

    def list_versions(self, alias: str) -> list[IndexVersion]:
        catalog = self._catalog()
        served = catalog["aliases"].get(alias)
        existing = self._table_names()
        versions = [
            IndexVersion(name=name, count=self.count(name), served=name == served, meta=meta)
            for name, meta in catalog["versions"].items()
            if meta.get("alias") == alias and name in existing
        ]
        return sorted(versions, key=lambda v: v.name, reverse=True)

    def drop(self, name: str) -> None:
        self._check_name(name)
        with self._lock:
            catalog = self._catalog()
            if name in catalog["aliases"].values():
                raise BackendError(f"index {name!r} is served by an alias; switch the alias first")
            if name in self._table_names():
                self._connect().drop_table(name)
            self._tables.pop(name, None)
            self._snapshots.pop(name, None)
            self._pinned.pop(name, None)
            self._writing.discard(name)
            catalog["versions"].pop(name, None)
            catalog.get("pins", {}).pop(name, None)
            self._write_catalog(catalog)

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor = None
            self._tables.clear()
            self._snapshots.clear()
            self._pinned.clear()
            self._writing.clear()
            self._db = None
