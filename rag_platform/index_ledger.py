"""The index ledger (``index_state``): which chunk, with which text and document version, each physical index
holds. A row is written only after the backend acknowledged the write, so the ledger never claims more than
the index has; after a crash the backend's own contents win (``reconcile_ledger``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rag_platform.warehouse import execute_many, insert_columns, registered, rows_as_dicts, scalar

if TYPE_CHECKING:
    import duckdb

    from rag_platform.backends import IndexBackend


@dataclass(frozen=True, slots=True)
class IndexDelta:
    """What a version needs to hold exactly the live chunks, by the ledger (chunk ids, sorted): chunks to write
    whole (new, or text changed), chunks whose document changed around them (same text and vector: only the
    metadata fields are rewritten), and chunks to delete."""

    upsert: list[str]
    update_metadata: list[str]
    delete: list[str]


def index_delta(con: duckdb.DuckDBPyConnection, name: str, chunker_fp: str) -> IndexDelta:
    params = {"name": name, "chunker": chunker_fp}
    changed = con.execute(
        """SELECT c.chunk_id, s.chunk_id IS NOT NULL AND s.text_hash IS NOT DISTINCT FROM c.text_hash
           FROM chunks c
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
    return IndexDelta(
        upsert=[cid for cid, same_text in changed if not same_text],
        update_metadata=[cid for cid, same_text in changed if same_text],
        delete=[r[0] for r in delete],
    )


def chunk_rows(con: duckdb.DuckDBPyConnection, chunk_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The ledger rows of ``chunk_ids``, ordered by id."""
    with registered(con, "wanted_ids", {"chunk_id": chunk_ids}):
        return rows_as_dicts(
            con,
            """SELECT c.chunk_id, c.document_id, c.uri, c.title, c.text, c.text_hash, c.document_version,
                      c.heading_path
               FROM chunks c JOIN wanted_ids USING (chunk_id) ORDER BY c.chunk_id""",
        )


def vectors_for(con: duckdb.DuckDBPyConnection, model_id: str, hashes: Sequence[str]) -> dict[str, list[float]]:
    """Cached vectors of ``model_id`` by text hash."""
    if not hashes:
        return {}
    with registered(con, "wanted", {"text_hash": hashes}):
        rows = con.execute(
            "SELECT e.text_hash, e.vector FROM embedding_cache e JOIN wanted w USING (text_hash) WHERE e.model_id = ?",
            [model_id],
        ).fetchall()
    return {h: v for h, v in rows}


def record_written(con: duckdb.DuckDBPyConnection, name: str, rows: Sequence[dict[str, Any]], run_id: str) -> None:
    """Ledger rows for chunks the backend acknowledged."""
    insert_columns(
        con,
        "index_state",
        {
            "index_name": [name] * len(rows),
            "chunk_id": [r["chunk_id"] for r in rows],
            "document_id": [r["document_id"] for r in rows],
            "text_hash": [r["text_hash"] for r in rows],
            "document_version": [r["document_version"] for r in rows],
            "run_id": [run_id] * len(rows),
        },
    )


def record_deleted(con: duckdb.DuckDBPyConnection, name: str, chunk_ids: Sequence[str]) -> None:
    with registered(con, "gone_ids", {"chunk_id": chunk_ids}):
        con.execute(
            "DELETE FROM index_state WHERE index_name = ? AND chunk_id IN (SELECT chunk_id FROM gone_ids)", [name]
        )


def reconcile_ledger(con: duckdb.DuckDBPyConnection, backend: IndexBackend, name: str) -> None:
    """If a crash left the backend and the ledger disagreeing, trust the backend's own contents."""
    ledger = scalar(con, "SELECT count(*) FROM index_state WHERE index_name = ?", [name])
    if backend.count(name) == ledger:
        return
    held = backend.chunk_hashes(name)
    con.execute("DELETE FROM index_state WHERE index_name = ?", [name])
    # document_version NULL makes this run rewrite these rows' provenance fields (their metadata only, where the
    # held text is the live text).
    execute_many(
        con,
        "INSERT INTO index_state VALUES (?, ?, NULL, ?, NULL, NULL)",
        [[name, cid, h] for cid, h in sorted(held.items())],
    )
