"""The delta steps after dbt: chunk changed documents, embed new chunk texts, sync the search index.

Each step reads the ledger, does only the work the delta needs, and records what it did:
- ``sync_chunks``: re-chunks documents whose version changed, drops chunks of documents that left.
- ``embed_missing``: embeds chunk texts not in the cache (keyed by model id + text hash), committing per batch.
- ``sync_index``: upserts ledger chunks the index lacks, deletes what it should no longer hold, records each
  batch only after the backend acknowledged it, then (gates passing) moves the alias.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rag_platform import faults
from rag_platform.backends import IndexBackend
from rag_platform.chunking import Chunker, ChunkerConfig
from rag_platform.ingest import now
from rag_platform.records import IndexedChunk, ParsedDocument, stable_hash
from rag_platform.warehouse import execute_many, insert_columns, insert_rows, registered, rows_as_dicts, scalar

if TYPE_CHECKING:
    import duckdb

    from rag_platform.embedding import Embedder

MAPPING_VERSION = "chunks-v1"
WRITE_BATCH = 500

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(slots=True)
class ChunkStats:
    documents_chunked: int = 0
    documents_removed: int = 0
    chunks_added: int = 0
    chunks_deleted: int = 0
    chunks_total: int = 0


@dataclass(slots=True)
class EmbedStats:
    embedded: int = 0
    cached: int = 0
    batches: int = 0
    model_seconds: float = 0.0  # time inside the model alone, to tell embedding from pipeline overhead


@dataclass(slots=True)
class IndexStats:
    name: str = ""
    version: str = ""
    count: int = 0
    upserted: int = 0
    deleted: int = 0
    published: bool = False
    new_version: bool = False
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sync_chunks(con: duckdb.DuckDBPyConnection, chunker: Chunker, run_id: str, full: bool = False) -> ChunkStats:
    """Bring the chunk ledger for this chunker in line with ``current_documents``."""
    stats = ChunkStats()
    fp = chunker.config.fingerprint
    if full:
        con.execute("DELETE FROM chunked_documents WHERE chunker = ?", [fp])
    changed = con.execute(
        """
        SELECT d.uri, d.document_version
        FROM current_documents d
        LEFT JOIN chunked_documents c ON c.uri = d.uri AND c.chunker = ?
        WHERE c.uri IS NULL OR c.document_version != d.document_version
        ORDER BY d.uri
        """,
        [fp],
    ).fetchall()
    removed = [
        r[0]
        for r in con.execute(
            """SELECT c.uri FROM chunked_documents c LEFT JOIN current_documents d ON d.uri = c.uri
               WHERE c.chunker = ? AND d.uri IS NULL""",
            [fp],
        ).fetchall()
    ]
    for uri in removed:
        stats.chunks_deleted += _delete_document_chunks(con, uri, fp)
        con.execute("DELETE FROM chunked_documents WHERE uri = ? AND chunker = ?", [uri, fp])
        stats.documents_removed += 1
    # Worker processes pay off from a few hundred documents on (their start-up costs about a second).
    workers = (os.cpu_count() or 1) if len(changed) >= PARALLEL_CHUNKING_MIN_DOCUMENTS else 1
    with chunker.parallel(workers):
        for batch in _batches(changed, CHUNK_BATCH):
            _chunk_batch(con, chunker, [uri for uri, _ in batch], run_id, stats)
    stats.chunks_total = scalar(con, "SELECT count(*) FROM chunks WHERE chunker = ?", [fp])
    return stats


def _chunk_batch(
    con: duckdb.DuckDBPyConnection, chunker: Chunker, uris: Sequence[str], run_id: str, stats: ChunkStats
) -> None:
    """Re-chunk a batch of documents and replace their chunks in one transaction (texts read per batch)."""
    fp = chunker.config.fingerprint
    with registered(con, "batch_uris", {"uri": uris}):
        documents = con.execute(
            """SELECT d.uri, d.document_version, d.title, d.text, d.source
               FROM current_documents d JOIN batch_uris USING (uri) ORDER BY d.uri"""
        ).fetchall()
        old = {
            r[0]
            for r in con.execute(
                "SELECT c.chunk_id FROM chunks c JOIN batch_uris USING (uri) WHERE c.chunker = ?", [fp]
            ).fetchall()
        }
        rows: list[tuple[Any, ...]] = []
        versions = []
        created = now()
        parsed = [
            ParsedDocument(uri=uri, document_version=version, title=title, text=text, mime="text/markdown")
            for uri, version, title, text, _ in documents
        ]
        for (uri, version, _, _, source), chunks in zip(documents, chunker.chunk_many(parsed), strict=True):
            for c in chunks:
                rows.append(
                    (
                        c.chunk_id,
                        fp,
                        c.document_id,
                        uri,
                        source,
                        version,
                        c.ordinal,
                        c.title,
                        c.heading_path,
                        c.text,
                        c.text_hash,
                        c.token_count,
                        run_id,
                        created,
                    )
                )
            versions.append((uri, fp, version, run_id))
        new_ids = {row[0] for row in rows}
        stats.chunks_deleted += len(old - new_ids)
        stats.chunks_added += len(new_ids - old)
        con.execute("BEGIN")
        con.execute("DELETE FROM chunks WHERE chunker = ? AND uri IN (SELECT uri FROM batch_uris)", [fp])
        insert_rows(con, "chunks", CHUNK_COLUMNS, rows)
        insert_rows(con, "chunked_documents", ("uri", "chunker", "document_version", "run_id"), versions)
        con.execute("COMMIT")
        stats.documents_chunked += len(documents)


def _delete_document_chunks(con: duckdb.DuckDBPyConnection, uri: str, fp: str) -> int:
    return len(con.execute("DELETE FROM chunks WHERE uri = ? AND chunker = ? RETURNING chunk_id", [uri, fp]).fetchall())


def embed_missing(
    con: duckdb.DuckDBPyConnection,
    embedder: Embedder,
    chunker_fp: str,
    run_id: str,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> EmbedStats:
    """Embed every live chunk text the cache lacks; each batch is committed before the next starts."""
    import pyarrow as pa

    stats = EmbedStats()
    model_id = embedder.model_id
    missing = con.execute(
        """
        SELECT DISTINCT c.text_hash, c.text FROM chunks c
        LEFT JOIN embedding_cache e ON e.model_id = ? AND e.text_hash = c.text_hash
        WHERE c.chunker = ? AND e.text_hash IS NULL
        ORDER BY length(c.text), c.text_hash
        """,
        [model_id, chunker_fp],
    ).fetchall()
    total = scalar(con, "SELECT count(DISTINCT text_hash) FROM chunks WHERE chunker = ?", [chunker_fp])
    stats.cached = total - len(missing)
    for start in range(0, len(missing), batch_size):
        batch = missing[start : start + batch_size]
        faults.checkpoint("embed")
        started = time.perf_counter()
        vectors = embedder.embed([text for _, text in batch])
        stats.model_seconds = round(stats.model_seconds + time.perf_counter() - started, 3)
        insert_columns(
            con,
            "embedding_cache",
            {
                "model_id": [model_id] * len(batch),
                "text_hash": [h for h, _ in batch],
                "vector": pa.array(list(vectors.astype(np.float32)), type=pa.list_(pa.float32())),
                "run_id": [run_id] * len(batch),
                "created_at": [now()] * len(batch),
            },
        )
        stats.embedded += len(batch)
        stats.batches += 1
        if progress is not None:
            progress(stats.embedded, len(missing))
    return stats


def index_fingerprint(chunker: ChunkerConfig, model_id: str, dim: int, backend_kind: str) -> str:
    return stable_hash(
        {
            "chunker": chunker.fingerprint,
            "model": model_id,
            "dim": dim,
            "mapping": MAPPING_VERSION,
            "backend": backend_kind,
        },
        10,
    )


def _vectors_for(con: duckdb.DuckDBPyConnection, model_id: str, hashes: Sequence[str]) -> dict[str, list[float]]:
    if not hashes:
        return {}
    with registered(con, "wanted", {"text_hash": hashes}):
        rows = con.execute(
            "SELECT e.text_hash, e.vector FROM embedding_cache e JOIN wanted w USING (text_hash) WHERE e.model_id = ?",
            [model_id],
        ).fetchall()
    return {h: v for h, v in rows}


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True, slots=True)
class IndexPlan:
    name: str
    build: int
    fingerprint: str
    served: str | None
    new_version: bool


def plan_index_version(
    con: duckdb.DuckDBPyConnection, backend: IndexBackend, alias: str, fingerprint: str, full: bool
) -> IndexPlan:
    """Pick the physical index this run writes: the served one when its fingerprint still matches (and no full
    rebuild was asked), an unfinished build of this fingerprint, or a new version beside the served one."""
    served = backend.resolve_alias(alias)
    rows = con.execute(
        "SELECT name, fingerprint, status, build FROM index_versions WHERE alias = ? ORDER BY build DESC", [alias]
    ).fetchall()
    last_build = max((r[3] for r in rows), default=0)
    if not full:
        if served and any(r[0] == served and r[1] == fingerprint for r in rows):
            return IndexPlan(served, 0, fingerprint, served, False)
        for name, fp, status, build in rows:
            if fp == fingerprint and status in ("building", "ready"):
                return IndexPlan(name, build, fingerprint, served, True)
    build = last_build + 1
    return IndexPlan(f"{alias}-{fingerprint}-{build:04d}", build, fingerprint, served, True)


CHUNK_BATCH = 200  # documents re-chunked (and committed) together
PARALLEL_CHUNKING_MIN_DOCUMENTS = 400
CHUNK_COLUMNS = (
    "chunk_id",
    "chunker",
    "document_id",
    "uri",
    "source",
    "document_version",
    "ordinal",
    "title",
    "heading_path",
    "text",
    "text_hash",
    "token_count",
    "run_id",
    "created_at",
)

# (candidate version, served version or None) -> {"passed": bool, "message": str}
QualityGate = Callable[[str, "str | None"], dict[str, Any]]


def sync_index(
    con: duckdb.DuckDBPyConnection,
    backend: IndexBackend,
    *,
    alias: str,
    chunker: ChunkerConfig,
    model_id: str,
    dim: int,
    run_id: str,
    full: bool,
    keep_versions: int,
    max_delete_fraction: float,
    write_batch: int = WRITE_BATCH,
    log: Log = _quiet,
    quality_gate: QualityGate | None = None,
) -> IndexStats:
    """Make the target index version hold exactly the live chunks, then publish it if the gates pass.

    ``quality_gate(candidate, served)`` scores the candidate version before the alias may move.
    """
    fp = index_fingerprint(chunker, model_id, dim, backend.kind)
    plan = plan_index_version(con, backend, alias, fp, full)
    stats = IndexStats(name=alias, version=plan.name, new_version=plan.new_version)
    if plan.new_version:
        meta = {
            "alias": alias,
            "fingerprint": fp,
            "chunker": chunker.describe(),
            "chunker_fingerprint": chunker.fingerprint,
            "model": model_id,
            "dim": dim,
        }
        backend.create_version(plan.name, dim, meta)
        con.execute(
            """INSERT OR IGNORE INTO index_versions (name, alias, fingerprint, build, chunker, chunker_config, model_id,
                   dim, backend, status, created_at, created_run)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'building', ?, ?)""",
            [
                plan.name,
                alias,
                fp,
                plan.build,
                chunker.fingerprint,
                json.dumps(chunker.describe()),
                model_id,
                dim,
                backend.kind,
                now(),
                run_id,
            ],
        )
    _reconcile_ledger(con, backend, plan.name)
    to_upsert, to_delete = _index_delta(con, plan.name, chunker.fingerprint)

    gate = _delete_gate(con, plan, chunker.fingerprint, max_delete_fraction)
    stats.gates["index_delete_fraction_within_limit"] = gate
    if not gate["passed"] and not plan.new_version:
        log(f"gate failed, index left unchanged: {gate['message']}")
        stats.count = backend.count(plan.name)
        return stats

    for batch in _batches(to_upsert, write_batch):
        faults.checkpoint("index_write")
        rows = _chunk_rows(con, batch)
        vectors = _vectors_for(con, model_id, sorted({r["text_hash"] for r in rows}))
        docs = [
            IndexedChunk(
                chunk_id=r["chunk_id"],
                document_id=r["document_id"],
                source=r["uri"],
                title=r["title"],
                text=r["text"],
                document_version=r["document_version"],
                run_id=run_id,
                vector=vectors[r["text_hash"]],
                heading_path=r["heading_path"],
            )
            for r in rows
        ]
        backend.upsert(plan.name, docs)
        insert_columns(
            con,
            "index_state",
            {
                "index_name": [plan.name] * len(rows),
                "chunk_id": [r["chunk_id"] for r in rows],
                "document_id": [r["document_id"] for r in rows],
                "text_hash": [r["text_hash"] for r in rows],
                "document_version": [r["document_version"] for r in rows],
                "run_id": [run_id] * len(rows),
            },
        )
        stats.upserted += len(docs)
        log(f"indexed {stats.upserted}/{len(to_upsert)} chunks")
    for batch in _batches(to_delete, write_batch):
        faults.checkpoint("index_write")
        backend.delete(plan.name, list(batch))
        _delete_index_state(con, plan.name, batch)
        stats.deleted += len(batch)
    backend.refresh(plan.name)
    stats.count = backend.count(plan.name)
    live = scalar(con, "SELECT count(*) FROM chunks WHERE chunker = ?", [chunker.fingerprint])
    stats.gates["index_matches_ledger"] = _consistency_gate(con, backend, plan.name, live, model_id)
    if quality_gate is not None and stats.gates["index_matches_ledger"]["passed"]:
        stats.gates["retrieval_quality_within_tolerance"] = quality_gate(plan.name, plan.served)
    if not all(g["passed"] for g in stats.gates.values()):
        log("gates failed; the served index was not switched")
        return stats
    if plan.name != plan.served:
        faults.checkpoint("alias_switch")
        backend.swap_alias(alias, plan.name)
        con.execute(
            "INSERT INTO alias_events VALUES (?, ?, ?, ?, ?, ?)",
            [alias, plan.name, plan.served, run_id, now(), "publish"],
        )
    con.execute("UPDATE index_versions SET status = 'ready' WHERE alias = ? AND status = 'served'", [alias])
    con.execute(
        "UPDATE index_versions SET status = 'served', published_at = coalesce(published_at, ?) WHERE name = ?",
        [now(), plan.name],
    )
    stats.published = True
    prune_versions(con, backend, alias, keep_versions, protect={plan.name})
    return stats


def _index_delta(con: duckdb.DuckDBPyConnection, name: str, chunker_fp: str) -> tuple[list[str], list[str]]:
    """Chunk ids to write (new, or text or document version changed) and to delete, by the ledger, sorted."""
    params = {"name": name, "chunker": chunker_fp}
    upsert = con.execute(
        """SELECT c.chunk_id FROM chunks c
           LEFT JOIN index_state s ON s.index_name = $name AND s.chunk_id = c.chunk_id
           WHERE c.chunker = $chunker AND (s.chunk_id IS NULL OR s.text_hash IS DISTINCT FROM c.text_hash
                 OR s.document_version IS DISTINCT FROM c.document_version)
           ORDER BY c.chunk_id""",
        params,
    ).fetchall()
    delete = con.execute(
        """SELECT chunk_id FROM index_state
           WHERE index_name = $name AND chunk_id NOT IN (SELECT chunk_id FROM chunks WHERE chunker = $chunker)
           ORDER BY chunk_id""",
        params,
    ).fetchall()
    return [r[0] for r in upsert], [r[0] for r in delete]


def _delete_index_state(con: duckdb.DuckDBPyConnection, name: str, chunk_ids: Sequence[str]) -> None:
    with registered(con, "gone_ids", {"chunk_id": chunk_ids}):
        con.execute(
            "DELETE FROM index_state WHERE index_name = ? AND chunk_id IN (SELECT chunk_id FROM gone_ids)", [name]
        )


def _chunk_rows(con: duckdb.DuckDBPyConnection, chunk_ids: Sequence[str]) -> list[dict[str, Any]]:
    with registered(con, "wanted_ids", {"chunk_id": chunk_ids}):
        return rows_as_dicts(
            con,
            """SELECT c.chunk_id, c.document_id, c.uri, c.title, c.text, c.text_hash, c.document_version,
                      c.heading_path
               FROM chunks c JOIN wanted_ids USING (chunk_id) ORDER BY c.chunk_id""",
        )


def _reconcile_ledger(con: duckdb.DuckDBPyConnection, backend: IndexBackend, name: str) -> None:
    """If a crash left the backend and the ledger disagreeing, trust the backend's own contents."""
    ledger = scalar(con, "SELECT count(*) FROM index_state WHERE index_name = ?", [name])
    if backend.count(name) == ledger:
        return
    held = backend.chunk_hashes(name)
    con.execute("DELETE FROM index_state WHERE index_name = ?", [name])
    # document_version NULL forces a rewrite of these rows on this run, restoring their provenance fields.
    execute_many(
        con,
        "INSERT INTO index_state VALUES (?, ?, NULL, ?, NULL, NULL)",
        [[name, cid, h] for cid, h in sorted(held.items())],
    )


def _delete_gate(
    con: duckdb.DuckDBPyConnection, plan: IndexPlan, chunker_fp: str, max_fraction: float
) -> dict[str, Any]:
    """Refuse to publish when a run would drop more than ``max_fraction`` of the served documents."""
    if not plan.served:
        return {"passed": True, "message": "no served index yet"}
    served_docs = {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT document_id FROM index_state WHERE index_name = ? AND document_id IS NOT NULL",
            [plan.served],
        ).fetchall()
    }
    if not served_docs:
        return {"passed": True, "message": "served index is empty"}
    live = {
        r[0] for r in con.execute("SELECT DISTINCT document_id FROM chunks WHERE chunker = ?", [chunker_fp]).fetchall()
    }
    removed = len(served_docs - live)
    fraction = removed / len(served_docs)
    message = (
        f"{removed} of {len(served_docs)} served documents would be deleted ({fraction:.0%}; limit {max_fraction:.0%})"
    )
    return {"passed": fraction <= max_fraction, "message": message}


def _consistency_gate(
    con: duckdb.DuckDBPyConnection, backend: IndexBackend, name: str, expected: int, model_id: str, sample: int = 20
) -> dict[str, Any]:
    """The backend's count equals the ledger's live chunks, and a random sample round-trips text and vector."""
    count = backend.count(name)
    if count != expected:
        return {"passed": False, "message": f"index holds {count} chunks, ledger has {expected} live chunks"}
    ids = [r[0] for r in con.execute("SELECT chunk_id FROM index_state WHERE index_name = ?", [name]).fetchall()]
    picked = random.Random(name).sample(ids, min(sample, len(ids)))
    stored = {c.chunk_id: c for c in backend.get(name, picked)}
    rows = {r["chunk_id"]: r for r in _chunk_rows(con, picked)} if picked else {}
    vectors = _vectors_for(con, model_id, sorted({r["text_hash"] for r in rows.values()}))
    for cid in picked:
        got, want = stored.get(cid), rows.get(cid)
        if got is None or want is None or got.text != want["text"]:
            return {"passed": False, "message": f"chunk {cid} did not round-trip through the index"}
        if not np.allclose(np.asarray(got.vector), np.asarray(vectors[want["text_hash"]]), atol=1e-5):
            return {"passed": False, "message": f"chunk {cid} vector differs from the embedding cache"}
    return {"passed": True, "message": f"{count} chunks; {len(picked)} sampled chunks round-tripped"}


def prune_versions(
    con: duckdb.DuckDBPyConnection, backend: IndexBackend, alias: str, keep_versions: int, protect: set[str]
) -> list[str]:
    """Drop published versions beyond the newest ``keep_versions`` and abandoned builds; returns dropped names."""
    rows = con.execute(
        """SELECT name, status FROM index_versions WHERE alias = ? AND status IN ('served', 'ready', 'building')
           ORDER BY build DESC""",
        [alias],
    ).fetchall()
    kept = [name for name, status in rows if status in ("served", "ready")][:keep_versions]
    dropped = []
    for name, _status in rows:
        if name in protect or name in kept:
            continue
        backend.drop(name)
        con.execute("DELETE FROM index_state WHERE index_name = ?", [name])
        con.execute("UPDATE index_versions SET status = 'dropped', dropped_at = ? WHERE name = ?", [now(), name])
        dropped.append(name)
    return dropped
