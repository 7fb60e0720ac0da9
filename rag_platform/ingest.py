"""Ingest: scan the registered sources and append new document versions and tombstones to the warehouse.

Idempotent: a file whose bytes did not change adds nothing; a vanished file adds one tombstone; a file that
cannot be read is quarantined with its reason (and leaves the live corpus if it was live before).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rag_platform import faults
from rag_platform.records import document_id
from rag_platform.sources import SourceFile, file_fingerprint, read_file, scan_source
from rag_platform.warehouse import execute_many, first_row

if TYPE_CHECKING:
    import duckdb


@dataclass(slots=True)
class IngestStats:
    added: int = 0
    modified: int = 0
    deleted: int = 0
    unchanged: int = 0
    quarantined: int = 0
    scanned: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


INGEST_BATCH = 200


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def register_source(con: duckdb.DuckDBPyConnection, path: Path, run_id: str | None = None) -> bool:
    """Add a source folder if new; returns whether it was added."""
    exists = first_row(con, "SELECT 1 FROM sources WHERE path = ?", [str(path)])
    if exists:
        return False
    con.execute("INSERT INTO sources VALUES (?, ?, ?)", [str(path), now(), run_id])
    return True


def remove_source(con: duckdb.DuckDBPyConnection, path: Path) -> bool:
    """Forget a source; its documents become deletions at the next refresh."""
    removed = con.execute("DELETE FROM sources WHERE path = ? RETURNING path", [str(path)]).fetchall()
    return bool(removed)


def list_sources(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [row[0] for row in con.execute("SELECT path FROM sources ORDER BY path").fetchall()]


def _live_versions(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """uri -> document_version of the latest raw row, for URIs whose latest row is not a tombstone."""
    rows = con.execute(
        """
        SELECT uri, document_version, is_deleted FROM raw_documents
        QUALIFY row_number() OVER (PARTITION BY uri ORDER BY seq DESC) = 1
        """
    ).fetchall()
    return {uri: version for uri, version, deleted in rows if not deleted}


def _event(con: duckdb.DuckDBPyConnection, uri: str, event: str, version: str | None, run_id: str) -> None:
    con.execute(
        "INSERT INTO document_events VALUES (?, ?, ?, ?, ?, ?)", [uri, document_id(uri), event, version, run_id, now()]
    )


def _tombstone(con: duckdb.DuckDBPyConnection, uri: str, source: str, run_id: str) -> None:
    con.execute(
        """INSERT INTO raw_documents (uri, document_id, source, document_version, is_deleted, run_id, ingested_at)
           VALUES (?, ?, ?, NULL, TRUE, ?, ?)""",
        [uri, document_id(uri), source, run_id, now()],
    )


def ingest_sources(con: duckdb.DuckDBPyConnection, roots: Iterable[Path], run_id: str, max_bytes: int) -> IngestStats:
    """Bring the warehouse's raw document versions in line with the files under ``roots``."""
    stats = IngestStats()
    live = _live_versions(con)
    known = {
        uri: (key, version, status)
        for uri, key, version, status in con.execute(
            "SELECT uri, file_key, document_version, status FROM file_state"
        ).fetchall()
    }
    quarantined_before = {r[0]: r[1] for r in con.execute("SELECT uri, reason FROM quarantine").fetchall()}
    seen: set[str] = set()
    sources_by_uri: dict[str, str] = {}
    # Statements are grouped into transactions of INGEST_BATCH files: one commit per file would dominate.
    con.execute("BEGIN")
    for root in roots:
        if not root.is_dir():
            continue  # a vanished source counts as deleting its files (guarded by gates.max_delete_fraction)
        for file in scan_source(root):
            stats.scanned += 1
            seen.add(file.uri)
            sources_by_uri[file.uri] = file.source
            _ingest_file(con, file, run_id, max_bytes, live, known, quarantined_before, stats)
            if stats.scanned % INGEST_BATCH == 0:
                con.execute("COMMIT")
                con.execute("BEGIN")
    for uri in sorted(set(live) - seen):
        source = first_row(con, "SELECT source FROM raw_documents WHERE uri = ? LIMIT 1", [uri])
        _tombstone(con, uri, source[0] if source else "", run_id)
        _event(con, uri, "deleted", None, run_id)
        stats.deleted += 1
    gone = [uri for uri in set(known) | set(quarantined_before) if uri not in seen]
    if gone:
        execute_many(con, "DELETE FROM file_state WHERE uri = ?", [[u] for u in gone])
        execute_many(con, "DELETE FROM quarantine WHERE uri = ?", [[u] for u in gone])
    con.execute("COMMIT")
    return stats


def _ingest_file(
    con: duckdb.DuckDBPyConnection,
    file: SourceFile,
    run_id: str,
    max_bytes: int,
    live: dict[str, str],
    known: dict[str, tuple[str, str | None, str]],
    quarantined_before: dict[str, str],
    stats: IngestStats,
) -> None:
    key = file_fingerprint(file)
    previous = known.get(file.uri)
    if previous and previous[0] == key and (previous[2] == "quarantined") == (file.uri in quarantined_before):
        if previous[2] == "quarantined":
            stats.quarantined += 1
        else:
            stats.unchanged += 1
        return
    faults.checkpoint("parse")
    result = read_file(file, max_bytes)
    con.execute(
        "INSERT OR REPLACE INTO file_state VALUES (?, ?, ?, ?, ?)",
        [file.uri, file.source, key, result.document_version, "quarantined" if result.quarantined else "document"],
    )
    if result.quarantined is not None:
        stats.quarantined += 1
        q = result.quarantined
        if quarantined_before.get(file.uri) != q.reason:
            con.execute(
                "INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?, ?)",
                [q.uri, q.source, q.reason, q.document_version, now(), run_id],
            )
            _event(con, file.uri, "quarantined", q.document_version, run_id)
        if file.uri in live:
            _tombstone(con, file.uri, file.source, run_id)
        return
    con.execute("DELETE FROM quarantine WHERE uri = ?", [file.uri])
    doc = result.document
    assert doc is not None
    if live.get(file.uri) == doc.document_version:
        stats.unchanged += 1
        return
    event = "modified" if file.uri in live else "added"
    if event == "modified":
        stats.modified += 1
    else:
        stats.added += 1
    con.execute(
        """INSERT INTO raw_documents (uri, document_id, source, document_version, is_deleted, title, raw_text, mime,
                                      path, size_bytes, modified_at, run_id, ingested_at)
           VALUES (?, ?, ?, ?, FALSE, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            doc.uri,
            doc.document_id,
            file.source,
            doc.document_version,
            doc.title,
            doc.text,
            doc.mime,
            file.path,
            doc.metadata["size_bytes"],
            file.modified_at,
            run_id,
            now(),
        ],
    )
    _event(con, file.uri, event, doc.document_version, run_id)
