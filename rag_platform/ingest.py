"""Ingest: scan the registered sources and append new document versions and tombstones to the warehouse.

Idempotent: a file whose bytes did not change adds nothing; a vanished file adds one tombstone; a file that
cannot be read is quarantined with its reason (and leaves the live corpus if it was live before).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rag_platform import faults
from rag_platform.records import document_id
from rag_platform.sources import SourceFile, file_fingerprint, read_file, scan_source
from rag_platform.warehouse import first_row, insert_rows, registered

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


INGEST_BATCH = 200  # files whose rows are written in one transaction (unchanged files write nothing)


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


@dataclass(slots=True)
class _Writes:
    """Rows of one batch of files, written together: a statement per file would dominate the ingest."""

    run_id: str
    raw: list[tuple[object, ...]] = field(default_factory=list)
    events: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    file_state: list[tuple[str, str, str, str | None, str]] = field(default_factory=list)
    quarantine: list[tuple[str, str, str, str | None, str]] = field(default_factory=list)
    unquarantine: list[str] = field(default_factory=list)

    def event(self, uri: str, event: str, version: str | None) -> None:
        self.events.append((uri, document_id(uri), event, version))

    def tombstone(self, uri: str, source: str) -> None:
        self.raw.append((uri, document_id(uri), source, None, True, None, None, None, None, None, None))

    @property
    def pending(self) -> int:
        """Files with rows waiting to be written (every file that is not unchanged gets a file_state row)."""
        return len(self.file_state)

    def flush(self, con: duckdb.DuckDBPyConnection) -> None:
        stamp = now()
        if self.unquarantine:
            with registered(con, "_unquarantined", {"uri": self.unquarantine}):
                con.execute("DELETE FROM quarantine WHERE uri IN (SELECT uri FROM _unquarantined)")
        insert_rows(con, "file_state", FILE_STATE_COLUMNS, self.file_state)
        insert_rows(con, "quarantine", QUARANTINE_COLUMNS, [(*row, stamp, self.run_id) for row in self.quarantine])
        # Inserted in scan order, so ``seq`` keeps the order in which versions were seen.
        insert_rows(con, "raw_documents", RAW_COLUMNS, [(*row, self.run_id, stamp) for row in self.raw], replace=False)
        events = [(*row, self.run_id, stamp) for row in self.events]
        insert_rows(con, "document_events", EVENT_COLUMNS, events, replace=False)
        self.raw.clear()
        self.events.clear()
        self.file_state.clear()
        self.quarantine.clear()
        self.unquarantine.clear()


RAW_COLUMNS = (
    "uri",
    "document_id",
    "source",
    "document_version",
    "is_deleted",
    "title",
    "raw_text",
    "mime",
    "path",
    "size_bytes",
    "modified_at",
    "run_id",
    "ingested_at",
)
FILE_STATE_COLUMNS = ("uri", "source", "file_key", "document_version", "status")
QUARANTINE_COLUMNS = ("uri", "source", "reason", "document_version", "code", "since", "run_id")
EVENT_COLUMNS = ("uri", "document_id", "event", "document_version", "run_id", "occurred_at")


def ingest_sources(con: duckdb.DuckDBPyConnection, roots: Iterable[Path], run_id: str, max_bytes: int) -> IngestStats:
    """Bring the warehouse's raw document versions in line with the files under ``roots``.

    Writes go out in one transaction per ``INGEST_BATCH`` new, changed or quarantined files, each table in one
    statement: a refresh that changes a few files spread over a large corpus commits once, not once per batch.
    """
    stats = IngestStats()
    live = _live_versions(con)
    known = {
        uri: (key, version, status)
        for uri, key, version, status in con.execute(
            "SELECT uri, file_key, document_version, status FROM file_state"
        ).fetchall()
    }
    quarantined_before = {
        r[0]: (r[1], r[2]) for r in con.execute("SELECT uri, reason, code FROM quarantine").fetchall()
    }
    seen: set[str] = set()
    writes = _Writes(run_id)

    for root in roots:
        if not root.is_dir():
            continue  # a vanished source counts as deleting its files (guarded by gates.max_delete_fraction)
        for file in scan_source(root):
            stats.scanned += 1
            seen.add(file.uri)
            _ingest_file(writes, file, max_bytes, live, known, quarantined_before, stats)
            if writes.pending >= INGEST_BATCH:
                con.execute("BEGIN")
                writes.flush(con)
                con.execute("COMMIT")
    vanished = sorted(set(live) - seen)
    with registered(con, "_vanished", {"uri": vanished}):
        sources = dict(
            con.execute(
                "SELECT uri, any_value(source) FROM raw_documents WHERE uri IN (SELECT uri FROM _vanished) GROUP BY uri"
            ).fetchall()
        )
    for uri in vanished:
        writes.tombstone(uri, sources.get(uri, ""))
        writes.event(uri, "deleted", None)
        stats.deleted += 1
    gone = [uri for uri in set(known) | set(quarantined_before) if uri not in seen]
    con.execute("BEGIN")
    writes.flush(con)
    with registered(con, "_gone", {"uri": gone}):
        con.execute("DELETE FROM file_state WHERE uri IN (SELECT uri FROM _gone)")
        con.execute("DELETE FROM quarantine WHERE uri IN (SELECT uri FROM _gone)")
    con.execute("COMMIT")
    return stats


def _ingest_file(
    writes: _Writes,
    file: SourceFile,
    max_bytes: int,
    live: dict[str, str],
    known: dict[str, tuple[str, str | None, str]],
    quarantined_before: dict[str, tuple[str, str | None]],
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
    status = "quarantined" if result.quarantined else "document"
    writes.file_state.append((file.uri, file.source, key, result.document_version, status))
    if result.quarantined is not None:
        stats.quarantined += 1
        q = result.quarantined
        if quarantined_before.get(file.uri) != (q.reason, q.code):
            writes.quarantine.append((q.uri, q.source, q.reason, q.document_version, q.code))
            writes.event(file.uri, "quarantined", q.document_version)
        if file.uri in live:
            writes.tombstone(file.uri, file.source)
        return
    if file.uri in quarantined_before:
        writes.unquarantine.append(file.uri)
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
    writes.raw.append(
        (
            doc.uri,
            doc.document_id,
            file.source,
            doc.document_version,
            False,
            doc.title,
            doc.text,
            doc.mime,
            file.path,
            doc.metadata["size_bytes"],
            file.modified_at,
        )
    )
    writes.event(file.uri, event, doc.document_version)
