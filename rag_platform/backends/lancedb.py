"""The embedded default backend: one LanceDB table per index version, aliases in an atomic JSON catalog."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rag_platform.backends import (
    FILTER_FIELDS,
    TIE_MARGIN,
    BackendError,
    Filters,
    IndexMissing,
    IndexVersion,
    WritePolicy,
)
from rag_platform.fusion import reciprocal_rank_fusion, sort_hits
from rag_platform.records import Hit, IndexedChunk, sha256_hex

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_DELETE_BATCH = 500
_COLUMNS = ("chunk_id", "document_id", "source", "title", "text", "heading_path", "document_version", "run_id")


def _stub(chunk_id: str, score: float) -> Hit:
    """A ranked id awaiting its stored fields (fusion needs only ids and ranks)."""
    return Hit(chunk_id, "", "", "", "", "", score)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def where_clause(filters: Filters | None) -> str | None:
    """SQL predicate for exact-match filters; a list means any of. Unknown fields are an error."""
    if not filters:
        return None
    parts = []
    for field, value in sorted(filters.items()):
        if field not in FILTER_FIELDS:
            raise ValueError(f"unknown filter field {field!r}; allowed: {', '.join(sorted(FILTER_FIELDS))}")
        values = [value] if isinstance(value, str) else list(value)
        if not values or not all(isinstance(v, str) for v in values):
            raise ValueError(f"filter {field!r} needs a string or a non-empty list of strings")
        parts.append(f"{field} IN ({', '.join(_quote(v) for v in values)})")
    return " AND ".join(parts)


class LanceDBBackend:
    """Embedded search index. Exact (flat) kNN below ``ann_min_rows`` rows, an IVF-PQ index above."""

    kind = "lancedb"

    def __init__(self, root: Path, ann_min_rows: int = 50_000):
        self.root = Path(root)
        self.ann_min_rows = ann_min_rows
        self._db: Any = None
        self._tables: dict[str, Any] = {}
        self._matrices: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.RLock()

    # ---- plumbing ------------------------------------------------------------------------------------

    def _connect(self) -> Any:
        with self._lock:
            if self._db is None:
                import lancedb

                self.root.mkdir(parents=True, exist_ok=True)
                self._db = lancedb.connect(str(self.root))
            return self._db

    def _table_names(self) -> set[str]:
        result = self._connect().list_tables()
        names = getattr(result, "tables", None)
        return set(names if names is not None else result)

    def _table(self, name: str) -> Any:
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

    def upsert(self, name: str, chunks: Sequence[IndexedChunk], policy: WritePolicy = WritePolicy.UPSERT) -> int:
        if not chunks:
            return 0
        import pyarrow as pa

        table = self._table(name)
        rows = {c.chunk_id: c for c in chunks}  # the last write of an id wins, as in a sequence of upserts
        data = pa.Table.from_pylist(
            [
                {
                    **{column: getattr(c, column) for column in _COLUMNS},
                    "text_sha256": sha256_hex(c.text),
                    "vector": [float(x) for x in c.vector],
                }
                for c in rows.values()
            ],
            schema=table.schema,
        )
        with self._lock:
            table.merge_insert("chunk_id").when_matched_update_all().when_not_matched_insert_all().execute(data)
        return len(rows)

    def delete(self, name: str, chunk_ids: Sequence[str]) -> int:
        table = self._table(name)
        ids = sorted(set(chunk_ids))
        with self._lock:
            for start in range(0, len(ids), _DELETE_BATCH):
                batch = ids[start : start + _DELETE_BATCH]
                table.delete(f"chunk_id IN ({', '.join(_quote(i) for i in batch)})")
        return len(ids)

    def refresh(self, name: str) -> None:
        """Rebuild the full-text index over live rows; add an ANN index once the table is large."""
        table = self._table(name)
        with self._lock:
            rows = table.count_rows()
            if rows:
                table.create_fts_index("text", replace=True, use_tantivy=False, with_position=False)
                table.create_scalar_index("chunk_id", replace=True)  # row lookups by id stay fast
            if rows >= self.ann_min_rows and not any(i.index_type.startswith("IVF") for i in table.list_indices()):
                table.create_index(metric="cosine", vector_column_name="vector", replace=True)

    # ---- reads ---------------------------------------------------------------------------------------

    def count(self, name: str) -> int:
        return int(self._table(name).count_rows())

    def chunk_hashes(self, name: str) -> dict[str, str]:
        table = self._table(name)
        data = table.search().select(["chunk_id", "text_sha256"]).limit(None).to_arrow()
        return dict(zip(data["chunk_id"].to_pylist(), data["text_sha256"].to_pylist(), strict=True))

    def get(self, name: str, chunk_ids: Sequence[str]) -> list[IndexedChunk]:
        ids = sorted(set(chunk_ids))
        if not ids:
            return []
        table = self._table(name)
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

    def _matrix(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, unit vectors) of a table version, held in memory for exact search; reloaded when the
        table changes."""
        table = self._table(name)
        version = int(table.version)
        with self._lock:
            cached = self._matrices.get(name)
            if cached is not None and cached[0] == version:
                return cached[1], cached[2]
            data = table.search().select(["chunk_id", "vector"]).limit(None).to_arrow()
            ids = np.asarray(data["chunk_id"].to_pylist(), dtype=object)
            column = data["vector"].combine_chunks()
            dim = column.type.list_size
            vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
            self._matrices[name] = (version, ids, vectors)
            return ids, vectors

    def _exact_dense(self, name: str, vector: Sequence[float], fetch: int) -> list[tuple[str, float]]:
        ids, vectors = self._matrix(name)
        if not len(ids):
            return []
        query = np.asarray(vector, dtype=np.float32)
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        scores = vectors @ query
        top = np.argpartition(-scores, min(fetch, len(ids)) - 1)[:fetch] if len(ids) > fetch else np.arange(len(ids))
        return [(str(ids[i]), float(scores[i])) for i in top]

    def _hydrate(self, name: str, scored: Sequence[tuple[str, float]]) -> list[Hit]:
        """Hits with their stored fields, for (chunk id, score) pairs, in score order (ties by chunk id)."""
        if not scored:
            return []
        score = dict(scored)
        rows = (
            self._table(name)
            .search()
            .where(f"chunk_id IN ({', '.join(_quote(cid) for cid in score)})")
            .select(list(_COLUMNS))
            .limit(len(score))
            .to_arrow()
            .to_pylist()
        )
        return sort_hits(self._hits(rows, lambda r: score[r["chunk_id"]]))

    def _dense_ids(
        self, name: str, vector: Sequence[float], fetch: int, filters: Filters | None
    ) -> list[tuple[str, float]]:
        table = self._table(name)
        where = where_clause(filters)
        exact = table.count_rows() < self.ann_min_rows
        if exact and where is None:
            return self._exact_dense(name, vector, fetch)
        query = table.search(list(map(float, vector)), vector_column_name="vector").metric("cosine")
        if exact:
            query = query.bypass_vector_index()
        if where:
            query = query.where(where, prefilter=True)
        rows = query.select(["chunk_id", "_distance"]).limit(fetch).to_arrow().to_pylist()
        return [(r["chunk_id"], 1.0 - r["_distance"]) for r in rows]

    def _keyword_ids(self, name: str, query: str, fetch: int, filters: Filters | None) -> list[tuple[str, float]]:
        table = self._table(name)
        where = where_clause(filters)
        if not query.strip() or not table.count_rows():
            return []
        search = table.search(query, query_type="fts", fts_columns="text")
        if where:
            search = search.where(where, prefilter=True)
        try:
            rows = search.select(["chunk_id", "_score"]).limit(fetch).to_arrow().to_pylist()
        except (ValueError, RuntimeError) as exc:
            if "index" in str(exc).lower():
                raise BackendError(f"index {name!r} has no full-text index yet; run a refresh") from None
            raise
        return [(r["chunk_id"], r["_score"]) for r in rows]

    @staticmethod
    def _top(scored: Sequence[tuple[str, float]], k: int) -> list[tuple[str, float]]:
        return sorted(scored, key=lambda pair: (-pair[1], pair[0]))[:k]

    def search_dense(self, name: str, vector: Sequence[float], k: int, filters: Filters | None = None) -> list[Hit]:
        return self._hydrate(name, self._top(self._dense_ids(name, vector, k + TIE_MARGIN, filters), k))

    def search_keyword(self, name: str, query: str, k: int, filters: Filters | None = None) -> list[Hit]:
        return self._hydrate(name, self._top(self._keyword_ids(name, query, k + TIE_MARGIN, filters), k))

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
        """Fusion over ids and scores first; only the fused top ``k`` rows are read from the table."""
        depth = max(candidates, k)
        # Both candidate lists at once: LanceDB and numpy release the GIL while they search.
        keyword = self._pool().submit(self._keyword_ids, name, query, depth + TIE_MARGIN, filters)
        dense = self._dense_ids(name, vector, depth + TIE_MARGIN, filters)
        rankings = [
            [_stub(cid, score) for cid, score in self._top(dense, depth)],
            [_stub(cid, score) for cid, score in self._top(keyword.result(), depth)],
        ]
        fused = reciprocal_rank_fusion(rankings, k, rrf_k, weights)
        return self._hydrate(name, [(h.chunk_id, h.score) for h in fused])

    # ---- versions and aliases ------------------------------------------------------------------------

    def swap_alias(self, alias: str, name: str) -> None:
        self._table(name)  # must exist
        with self._lock:
            catalog = self._catalog()
            catalog["aliases"][alias] = name
            self._write_catalog(catalog)

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
            catalog["versions"].pop(name, None)
            self._write_catalog(catalog)

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor = None
            self._tables.clear()
            self._matrices.clear()
            self._db = None
