"""The DuckDB warehouse: document versions, chunk ledger, embedding cache, index ledger, runs, quarantine.

Concurrency model: one read-write connection at a time, opened only inside a run's write steps and closed
before dbt runs. Readers (CLI, API, sensors) never open the warehouse: after each run the writer exports a
read snapshot (``snapshot.duckdb``, swapped in with an atomic rename) and readers open that read-only.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

    from rag_platform.config import Settings

SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (path VARCHAR PRIMARY KEY, added_at TIMESTAMP, run_id VARCHAR);
CREATE SEQUENCE IF NOT EXISTS raw_documents_seq;
CREATE TABLE IF NOT EXISTS raw_documents (
    seq BIGINT PRIMARY KEY DEFAULT nextval('raw_documents_seq'),
    uri VARCHAR NOT NULL, document_id VARCHAR NOT NULL, source VARCHAR NOT NULL,
    document_version VARCHAR, is_deleted BOOLEAN NOT NULL, title VARCHAR, raw_text VARCHAR, mime VARCHAR,
    path VARCHAR, size_bytes BIGINT, modified_at DOUBLE, run_id VARCHAR NOT NULL, ingested_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS file_state (
    uri VARCHAR PRIMARY KEY, source VARCHAR, file_key VARCHAR, document_version VARCHAR, status VARCHAR
);
CREATE TABLE IF NOT EXISTS quarantine (
    uri VARCHAR PRIMARY KEY, source VARCHAR, reason VARCHAR, document_version VARCHAR,
    since TIMESTAMP, run_id VARCHAR
);
-- Added after the first release: homes created before it gain the column (NULL: lineage.quarantine_code).
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS code VARCHAR;
CREATE TABLE IF NOT EXISTS document_events (
    uri VARCHAR, document_id VARCHAR, event VARCHAR, document_version VARCHAR, run_id VARCHAR, occurred_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id VARCHAR PRIMARY KEY, chunker VARCHAR NOT NULL, document_id VARCHAR NOT NULL, uri VARCHAR NOT NULL,
    source VARCHAR, document_version VARCHAR NOT NULL, ordinal INTEGER, title VARCHAR, heading_path VARCHAR,
    text VARCHAR NOT NULL, text_hash VARCHAR NOT NULL, token_count INTEGER, run_id VARCHAR, created_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS chunked_documents (
    uri VARCHAR, chunker VARCHAR, document_version VARCHAR, run_id VARCHAR, PRIMARY KEY (uri, chunker)
);
CREATE TABLE IF NOT EXISTS embedding_cache (
    model_id VARCHAR, text_hash VARCHAR, vector FLOAT[], run_id VARCHAR, created_at TIMESTAMP,
    PRIMARY KEY (model_id, text_hash)
);
CREATE TABLE IF NOT EXISTS index_versions (
    name VARCHAR PRIMARY KEY, alias VARCHAR, fingerprint VARCHAR, build INTEGER, chunker VARCHAR,
    chunker_config VARCHAR, model_id VARCHAR, dim INTEGER, backend VARCHAR, status VARCHAR,
    created_at TIMESTAMP, created_run VARCHAR, published_at TIMESTAMP, dropped_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS index_state (
    index_name VARCHAR, chunk_id VARCHAR, document_id VARCHAR, text_hash VARCHAR, document_version VARCHAR,
    run_id VARCHAR,
    PRIMARY KEY (index_name, chunk_id)
);
CREATE TABLE IF NOT EXISTS published_chunks (
    alias VARCHAR, index_name VARCHAR, chunk_id VARCHAR, document_id VARCHAR, PRIMARY KEY (alias, chunk_id)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, pid INTEGER, started_at TIMESTAMP, finished_at TIMESTAMP, status VARCHAR,
    full_rebuild BOOLEAN, stats VARCHAR
);
CREATE TABLE IF NOT EXISTS alias_events (
    alias VARCHAR, index_name VARCHAR, previous VARCHAR, run_id VARCHAR, occurred_at TIMESTAMP, reason VARCHAR
);
CREATE TABLE IF NOT EXISTS evaluations (
    index_name VARCHAR, alias VARCHAR, run_id VARCHAR, dataset VARCHAR, mode VARCHAR, queries INTEGER,
    ndcg_at_10 DOUBLE, recall_at_10 DOUBLE, recall_at_100 DOUBLE, mrr_at_10 DOUBLE, evaluated_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS fine_tuned_models (
    version VARCHAR PRIMARY KEY, base_model VARCHAR, path VARCHAR, data_version VARCHAR, pairs INTEGER,
    excluded_pairs INTEGER, hard_negatives INTEGER, train_seconds DOUBLE, steps INTEGER, training VARCHAR,
    run_id VARCHAR, created_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS fine_tune_comparisons (
    version VARCHAR, dataset VARCHAR, served_index VARCHAR, candidate_index VARCHAR, base_ndcg_at_10 DOUBLE,
    candidate_ndcg_at_10 DOUBLE, min_gain DOUBLE, published BOOLEAN, run_id VARCHAR, compared_at TIMESTAMP
);
"""

# Tables copied into the read snapshot; vectors and raw text stay in the warehouse.
SNAPSHOT_QUERIES = {
    "sources": "SELECT * FROM sources",
    "quarantine": "SELECT * FROM quarantine",
    "evaluations": "SELECT * FROM evaluations",
    "document_events": "SELECT * FROM document_events",
    "document_versions": (
        "SELECT uri, document_id, source, document_version, is_deleted, title, path, size_bytes, run_id, "
        "ingested_at FROM raw_documents"
    ),
    "chunks": "SELECT * EXCLUDE (text) FROM chunks",
    "embedding_runs": "SELECT model_id, text_hash, run_id, created_at FROM embedding_cache",
    "index_versions": "SELECT * FROM index_versions",
    "index_state": "SELECT * FROM index_state",
    "published_chunks": "SELECT * FROM published_chunks",
    "runs": "SELECT * FROM runs",
    "alias_events": "SELECT * FROM alias_events",
    "fine_tuned_models": "SELECT * FROM fine_tuned_models",
    "fine_tune_comparisons": "SELECT * FROM fine_tune_comparisons",
}


class WarehouseBusy(RuntimeError):
    """The warehouse file stayed locked by another process past the retry budget."""


def _connect(path: Path, read_only: bool, timeout_s: float) -> duckdb.DuckDBPyConnection:
    import duckdb

    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise WarehouseBusy(f"{path.name} is locked by another process: {exc}") from None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


# Warehouses this process keeps open for a whole run (``held``), by path.
_held: dict[Path, duckdb.DuckDBPyConnection] = {}
_held_lock = threading.Lock()


@contextmanager
def held(settings: Settings, timeout_s: float = 60.0) -> Iterator[None]:
    """Keep the warehouse open in this process until the block ends: for a run, which holds the refresh lock and
    so is the only writer. Every ``writer``/``owner_reader`` inside then shares the open database instead of
    loading its catalog and checkpointing it once per step (0.6-1.0 s of a 4-7 s warm docs refresh). Other
    processes cannot open the file meanwhile: readers use the snapshot, and ``released`` lets a subprocess in."""
    path = settings.warehouse_path
    if path in _held:
        yield
        return
    con = _open_for_writes(settings, timeout_s)
    with _held_lock:
        _held[path] = con
    try:
        yield
    finally:
        with _held_lock:
            con = _held.pop(path, con)
        con.close()


@contextmanager
def released(settings: Settings, timeout_s: float = 60.0) -> Iterator[None]:
    """Let go of a held warehouse while another process (dbt's subprocess) opens it; hold it again after."""
    path = settings.warehouse_path
    with _held_lock:
        con = _held.pop(path, None)
    if con is None:
        yield
        return
    con.close()
    try:
        yield
    finally:
        reopened = _connect(path, read_only=False, timeout_s=timeout_s)
        with _held_lock:
            _held[path] = reopened


@contextmanager
def _held_cursor(path: Path) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """A connection of its own on the held database at ``path`` (closing it keeps the database open), or None."""
    with _held_lock:
        con = _held.get(path)
        cursor = con.cursor() if con is not None else None
    try:
        yield cursor
    finally:
        if cursor is not None:
            cursor.close()


@contextmanager
def writer(settings: Settings, timeout_s: float = 60.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """The single read-write connection, for the duration of one write step."""
    with _held_cursor(settings.warehouse_path) as shared:
        if shared is not None:
            yield shared
            return
    con = _open_for_writes(settings, timeout_s)
    try:
        yield con
    finally:
        con.close()


def _open_for_writes(settings: Settings, timeout_s: float) -> duckdb.DuckDBPyConnection:
    """A new read-write connection to the warehouse, its schema created where missing."""
    settings.home.mkdir(parents=True, exist_ok=True)
    con = _connect(settings.warehouse_path, read_only=False, timeout_s=timeout_s)
    try:
        con.execute(SCHEMA)
    except BaseException:
        con.close()
        raise
    return con


@contextmanager
def reader(settings: Settings, timeout_s: float = 10.0) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """A short read-only connection to the latest snapshot; None before the first run."""
    if not settings.snapshot_path.exists():
        yield None
        return
    con = _connect(settings.snapshot_path, read_only=True, timeout_s=timeout_s)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def owner_reader(settings: Settings, timeout_s: float = 60.0) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """A read-only warehouse connection for the process that just wrote it (e.g. to summarise its own run)."""
    with _held_cursor(settings.warehouse_path) as shared:
        if shared is not None:
            yield shared
            return
    if not settings.warehouse_path.exists():
        yield None
        return
    con = _connect(settings.warehouse_path, read_only=True, timeout_s=timeout_s)
    try:
        yield con
    finally:
        con.close()


def export_snapshot(settings: Settings) -> None:
    """Copy the tables readers need into a fresh file and swap it in atomically. Written by the warehouse's own
    (or held) connection: the writing process is the only one that may open the file."""
    tmp = settings.home / f"snapshot.{os.getpid()}.tmp"
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        leftover.unlink(missing_ok=True)
    with writer(settings) as con:
        con.execute("ATTACH ? AS snapshot_out", [str(tmp)])  # a quote in the home is data
        try:
            queries = dict(SNAPSHOT_QUERIES)
            if first_row(
                con,
                "SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() AND "
                "schema_name = 'main' AND table_name = 'current_documents'",
            ):
                queries["current_documents"] = (
                    "SELECT uri, document_id, source, document_version, title, mime, path, size_bytes, language, "
                    "char_length, run_id, ingested_at FROM current_documents"
                )
            for table, query in queries.items():
                con.execute(f"CREATE TABLE snapshot_out.{table} AS {query}")
            con.execute("CHECKPOINT snapshot_out")
        finally:
            con.execute("DETACH snapshot_out")
    os.replace(tmp, settings.snapshot_path)


def scalar(con: duckdb.DuckDBPyConnection, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Any:
    """The first column of the first row (None when no row); the result is fully consumed."""
    rows = con.execute(query, params if params is not None else []).fetchall()
    return rows[0][0] if rows else None


def first_row(
    con: duckdb.DuckDBPyConnection, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None
) -> tuple[Any, ...] | None:
    rows = con.execute(query, params if params is not None else []).fetchall()
    return rows[0] if rows else None


def rows_as_dicts(con: duckdb.DuckDBPyConnection, query: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    cursor = con.execute(query, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, view: str, columns: Mapping[str, Sequence[Any]]) -> Iterator[int]:
    """Expose Python columns to SQL as the view ``view`` for the duration (through Arrow); yields the row count."""
    import pyarrow as pa

    data = pa.table({name: v if isinstance(v, pa.Array) else list(v) for name, v in columns.items()})
    con.register(view, data)
    try:
        yield data.num_rows
    finally:
        con.unregister(view)


def insert_columns(
    con: duckdb.DuckDBPyConnection, table: str, columns: Mapping[str, Sequence[Any]], replace: bool = True
) -> None:
    """Insert rows given as named columns in one statement, through Arrow: much faster than ``executemany``,
    which DuckDB runs row by row. Columns not given take their defaults."""
    if not columns:
        return
    view = f"_insert_{table}"
    with registered(con, view, columns) as rows:
        if rows:
            verb = "INSERT OR REPLACE" if replace else "INSERT"
            names = ", ".join(columns)
            con.execute(f"{verb} INTO {table} ({names}) SELECT {names} FROM {view}")


def insert_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    replace: bool = True,
) -> None:
    """``insert_columns`` for rows given as tuples, each in the order of ``names``."""
    if rows:
        insert_columns(con, table, {name: [row[i] for row in rows] for i, name in enumerate(names)}, replace)


def execute_many(con: duckdb.DuckDBPyConnection, sql: str, rows: Sequence[Sequence[object]]) -> None:
    """``executemany`` that accepts an empty batch (DuckDB rejects one)."""
    if rows:
        con.executemany(sql, rows)


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``items`` in consecutive slices of at most ``size`` (one transaction or backend request each)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
