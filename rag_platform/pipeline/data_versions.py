"""Each asset's content as one hash: Dagster records it as the asset's data version, so the UI can tell which
downstream assets are stale and why. The same content always gives the same version."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag_platform.warehouse import first_row

if TYPE_CHECKING:
    import duckdb

    from rag_platform.parts import RunParts

_ITEMS_SQL = {
    "raw_documents": "SELECT uri || ':' || coalesce(document_version, '-') AS item FROM file_state",
    "document_chunks": "SELECT chunk_id AS item FROM chunks WHERE chunker = $chunker",
    "chunk_embeddings": """SELECT c.text_hash AS item FROM chunks c JOIN embedding_cache e
                           ON e.text_hash = c.text_hash AND e.model_id = $model WHERE c.chunker = $chunker""",
    "search_index": """SELECT s.index_name || ':' || s.chunk_id || ':' || s.text_hash || ':'
                              || coalesce(s.document_version, '-') AS item
                       FROM index_state s JOIN index_versions v ON v.name = s.index_name
                       WHERE v.alias = $alias AND v.status = 'served'""",
}
ASSETS = tuple(_ITEMS_SQL)


def data_version(parts: RunParts, asset: str, con: duckdb.DuckDBPyConnection | None = None) -> str:
    """A 16-hex content hash of ``asset`` (one of ``ASSETS``), read inside the run from the warehouse (through
    ``con`` when the step already holds the writer)."""
    sql = _ITEMS_SQL[asset]
    params = {"chunker": parts.chunker_config.fingerprint, "alias": parts.settings.index.alias}
    if "$model" in sql:
        params["model"] = parts.embedder.model_id
    query = f"SELECT coalesce(sha256(string_agg(item, ',' ORDER BY item)), 'empty') FROM ({sql})"
    bound = {k: v for k, v in params.items() if f"${k}" in sql}
    if con is not None:
        row = first_row(con, query, bound)
    else:
        with parts.warehouse() as own:
            row = first_row(own, query, bound)
    return str(row[0])[:16] if row else "empty"
