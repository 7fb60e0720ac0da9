"""Keep the chunk ledger in line with ``current_documents``: re-chunk documents whose version changed, drop the
chunks of documents that left. Idempotent: a second run with nothing changed writes nothing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rag_platform.chunking import Chunker
from rag_platform.ingest import now
from rag_platform.records import ParsedDocument
from rag_platform.warehouse import batches, insert_rows, registered, scalar

if TYPE_CHECKING:
    import duckdb

CHUNK_BATCH = 200  # documents re-chunked (and committed) together
# Worker processes pay off from a few hundred documents on (their start-up costs about a second).
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


@dataclass(slots=True)
class ChunkStats:
    documents_chunked: int = 0
    documents_removed: int = 0
    chunks_added: int = 0
    chunks_deleted: int = 0
    chunks_total: int = 0


def sync_chunks(con: duckdb.DuckDBPyConnection, chunker: Chunker, run_id: str, full: bool = False) -> ChunkStats:
    """Bring the chunk ledger for this chunker in line with ``current_documents`` (all of it when ``full``)."""
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
        stats.chunks_deleted += len(
            con.execute("DELETE FROM chunks WHERE uri = ? AND chunker = ? RETURNING chunk_id", [uri, fp]).fetchall()
        )
        con.execute("DELETE FROM chunked_documents WHERE uri = ? AND chunker = ?", [uri, fp])
        stats.documents_removed += 1
    workers = (os.cpu_count() or 1) if len(changed) >= PARALLEL_CHUNKING_MIN_DOCUMENTS else 1
    with chunker.parallel(workers):
        for batch in batches(changed, CHUNK_BATCH):
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
