"""Lineage and status, read from the snapshot: any chunk or document traced back to its source version,
the runs that ingested, chunked, embedded and indexed it, the chunker, the model and the index version."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from rag_platform.records import QuarantineCode
from rag_platform.warehouse import first_row, reader, rows_as_dicts, scalar

if TYPE_CHECKING:
    import duckdb

    from rag_platform.backends import IndexBackend
    from rag_platform.config import Settings


def _iso(value: Any) -> Any:
    return value.isoformat() + "Z" if hasattr(value, "isoformat") else value


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _iso(v) for k, v in row.items()}


def _served(con: duckdb.DuckDBPyConnection, alias: str) -> dict[str, Any] | None:
    rows = rows_as_dicts(con, "SELECT * FROM index_versions WHERE alias = ? AND status = 'served'", [alias])
    return rows[0] if rows else None


def _history(con: duckdb.DuckDBPyConnection, document_id: str) -> list[dict[str, Any]]:
    rows = rows_as_dicts(
        con,
        'SELECT event, document_version, run_id, occurred_at AS "at" FROM document_events '
        "WHERE document_id = ? ORDER BY occurred_at, event",
        [document_id],
    )
    return [_clean(r) for r in rows]


def _ingest_run(con: duckdb.DuckDBPyConnection, uri: str, version: str | None) -> str | None:
    row = first_row(
        con,
        """SELECT run_id FROM document_versions WHERE uri = ? AND document_version IS NOT DISTINCT FROM ?
           ORDER BY ingested_at LIMIT 1""",
        [uri, version],
    )
    return row[0] if row else None


def audit(settings: Settings, identifier: str) -> dict[str, Any] | None:
    """The lineage record of a chunk id or document id; None when the id is unknown."""
    identifier = identifier.strip().lower()
    with reader(settings) as con:
        if con is None:
            return None
        chunk = rows_as_dicts(con, "SELECT * FROM chunks WHERE chunk_id = ?", [identifier])
        if chunk:
            return _audit_chunk(con, settings, chunk[0])
        return _audit_document(con, settings, identifier)


def _audit_chunk(con: duckdb.DuckDBPyConnection, settings: Settings, chunk: dict[str, Any]) -> dict[str, Any]:
    versions = rows_as_dicts(
        con,
        """SELECT v.name, v.status, v.model_id, v.chunker_config, s.run_id, s.document_version
           FROM index_state s JOIN index_versions v ON v.name = s.index_name
           WHERE s.chunk_id = ? ORDER BY (v.status = 'served') DESC, v.build DESC""",
        [chunk["chunk_id"]],
    )
    indexed = versions[0] if versions else {}
    model_id = indexed.get("model_id")
    embedded = first_row(
        con,
        "SELECT run_id FROM embedding_runs WHERE text_hash = ? AND (? IS NULL OR model_id = ?) "
        "ORDER BY created_at LIMIT 1",
        [chunk["text_hash"], model_id, model_id],
    )
    runs = {
        "ingested": _ingest_run(con, chunk["uri"], chunk["document_version"]),
        "chunked": chunk["run_id"],
        "embedded": embedded[0] if embedded else None,
        "indexed": indexed.get("run_id"),
    }
    return {
        "id": chunk["chunk_id"],
        "kind": "chunk",
        "chunk_id": chunk["chunk_id"],
        "document_id": chunk["document_id"],
        "source": chunk["uri"],
        "title": chunk["title"],
        "heading_path": chunk["heading_path"],
        "document_version": chunk["document_version"],
        "run_id": runs["indexed"],
        "runs": runs,
        "chunker": json.loads(indexed["chunker_config"])
        if indexed.get("chunker_config")
        else {"fingerprint": chunk["chunker"]},
        "embedding_model": model_id,
        "index_version": indexed.get("name"),
        "index_versions": [{"name": v["name"], "status": v["status"]} for v in versions],
        "text_sha256": chunk["text_hash"],
        "history": _history(con, chunk["document_id"]),
    }


def _audit_document(con: duckdb.DuckDBPyConnection, settings: Settings, document_id: str) -> dict[str, Any] | None:
    versions = rows_as_dicts(
        con,
        "SELECT * FROM document_versions WHERE document_id = ? ORDER BY ingested_at",
        [document_id],
    )
    history = _history(con, document_id)
    if not versions and not history:
        return None
    uri = (
        versions[-1]["uri"]
        if versions
        else scalar(con, "SELECT uri FROM document_events WHERE document_id = ? LIMIT 1", [document_id])
    )
    live = [v for v in versions if v["document_version"]]
    latest = versions[-1] if versions else None
    deleted = bool(latest and latest["is_deleted"])
    served = _served(con, settings.index.alias)
    chunk_rows = rows_as_dicts(
        con,
        """SELECT c.chunk_id, s.run_id FROM chunks c
           LEFT JOIN index_state s ON s.chunk_id = c.chunk_id AND s.index_name = ?
           WHERE c.document_id = ? ORDER BY c.ordinal""",
        [served["name"] if served else None, document_id],
    )
    chunked = first_row(
        con, "SELECT run_id FROM chunks WHERE document_id = ? ORDER BY created_at DESC LIMIT 1", [document_id]
    )
    current_version = None if deleted or not live else live[-1]["document_version"]
    indexed_runs = sorted({r["run_id"] for r in chunk_rows if r["run_id"]})
    return {
        "id": document_id,
        "kind": "document",
        "document_id": document_id,
        "source": uri,
        "title": latest["title"] if latest and latest["title"] else (live[-1]["title"] if live else None),
        "document_version": current_version,
        "status": "deleted" if deleted else ("live" if current_version else "quarantined"),
        "first_seen": _iso(versions[0]["ingested_at"]) if versions else None,
        "last_seen": _iso(versions[-1]["ingested_at"]) if versions else None,
        "run_id": indexed_runs[-1] if indexed_runs else None,
        "runs": {
            "ingested": _ingest_run(con, uri, current_version) if current_version else None,
            "chunked": chunked[0] if chunked else None,
            "indexed": indexed_runs[-1] if indexed_runs else None,
        },
        "chunker": json.loads(served["chunker_config"]) if served else None,
        "embedding_model": served["model_id"] if served else None,
        "index_version": served["name"] if served else None,
        "chunks": [r["chunk_id"] for r in chunk_rows],
        "history": history,
    }


def index_checksum(hashes: dict[str, str]) -> str:
    """sha256 over ``chunk_id:text_sha256`` lines in chunk id order: equal indexes give equal checksums."""
    digest = hashlib.sha256()
    for chunk_id in sorted(hashes):
        digest.update(f"{chunk_id}:{hashes[chunk_id]}\n".encode())
    return digest.hexdigest()


# Rows quarantined before the ``code`` column existed: their reason texts, by the code they stand for.
_LEGACY_REASONS = (
    ("empty file", QuarantineCode.EMPTY),
    ("no text content", QuarantineCode.EMPTY),
    ("binary content", QuarantineCode.BINARY),
    ("invalid UTF-8", QuarantineCode.BAD_ENCODING),
    ("file is ", QuarantineCode.TOO_LARGE),
    ("unreadable", QuarantineCode.UNREADABLE),
)


def quarantine_code(code: str | None, reason: str) -> str:
    """The row's stable code; for a row written before codes existed, the code its reason text stands for."""
    if code:
        return code
    return next((c for prefix, c in _LEGACY_REASONS if reason.startswith(prefix)), QuarantineCode.UNPARSEABLE)


def quarantine_rows(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The quarantine table as the contract shows it: ``source``, ``code``, ``reason``, ``since``."""
    rows = rows_as_dicts(con, "SELECT * FROM quarantine ORDER BY uri")  # * : a snapshot from before ``code``
    return [
        _clean(
            {
                "source": r["uri"],
                "code": quarantine_code(r.get("code"), r["reason"]),
                "reason": r["reason"],
                "since": r["since"],
            }
        )
        for r in rows
    ]


def quarantined(settings: Settings) -> list[dict[str, Any]]:
    """Documents kept out of the index, each with its reason and since when (from the read snapshot)."""
    with reader(settings) as con:
        return [] if con is None else quarantine_rows(con)


def latest_evaluation(settings: Settings) -> dict[str, Any] | None:
    """The most recent retrieval evaluation of a published index version (``eval.dataset``), if any."""
    with reader(settings) as con:
        if con is None:
            return None
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "evaluations" not in tables:
            return None
        rows = rows_as_dicts(
            con,
            """SELECT e.* FROM evaluations e JOIN runs r ON r.run_id = e.run_id
               WHERE e.alias = ? AND r.status = 'succeeded' ORDER BY e.evaluated_at DESC LIMIT 1""",
            [settings.index.alias],
        )
    return _clean(rows[0]) if rows else None


def status(settings: Settings, backend: IndexBackend) -> dict[str, Any]:
    """What is indexed and how fresh, per the contract's ``status`` shape."""
    with reader(settings) as con:
        if con is None:
            return {
                "documents": 0,
                "chunks": 0,
                "index": {"name": settings.index.alias, "version": None, "count": 0, "checksum": None},
                "last_refresh": None,
                "quarantined": [],
                "sources": [],
            }
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        # Documents of the served index as last published: a refresh that a gate blocked leaves no trace here.
        # Homes published before that record existed count the served version's ledger.
        documents = (
            scalar(
                con,
                """SELECT CASE WHEN EXISTS (SELECT 1 FROM published_chunks WHERE alias = $alias)
                   THEN (SELECT count(DISTINCT document_id) FROM published_chunks WHERE alias = $alias)
                   ELSE (SELECT count(DISTINCT s.document_id) FROM index_state s
                         JOIN index_versions v ON v.name = s.index_name
                         WHERE v.alias = $alias AND v.status = 'served') END""",
                {"alias": settings.index.alias},
            )
            if "published_chunks" in tables
            else 0
        )
        quarantine = quarantine_rows(con)
        last = rows_as_dicts(
            con,
            "SELECT run_id, status, started_at, finished_at, stats FROM runs ORDER BY started_at DESC LIMIT 1",
        )
        sources = [r[0] for r in con.execute("SELECT path FROM sources ORDER BY path").fetchall()]
        versions = rows_as_dicts(
            con, "SELECT name, status FROM index_versions WHERE alias = ? ORDER BY build", [settings.index.alias]
        )
    version = backend.resolve_alias(settings.index.alias)
    hashes = backend.chunk_hashes(version) if version else {}
    last_refresh = None
    if last:
        run = last[0]
        stats = json.loads(run.pop("stats") or "{}")
        last_refresh = {
            **_clean(run),
            "published": bool(stats.get("index", {}).get("published")),
            "gates": stats.get("gates", {}),
        }
    return {
        "documents": int(documents),
        "chunks": len(hashes),
        "index": {
            "name": settings.index.alias,
            "version": version,
            "count": backend.count(version) if version else 0,
            "checksum": index_checksum(hashes) if version else None,
            "backend": backend.kind,
        },
        "last_refresh": last_refresh,
        "quarantined": quarantine,
        "sources": sources,
        "versions": versions,
        "evaluation": latest_evaluation(settings),
    }
