"""The run record (``runs`` table): each step's counts and gate outcomes under the Dagster run id, so the CLI,
the UI metadata and ``status`` all report the same figures."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from rag_platform import warehouse
from rag_platform.ingest import now
from rag_platform.warehouse import first_row

if TYPE_CHECKING:
    import duckdb

    from rag_platform.config import Settings
    from rag_platform.gates import Gate


def _stats(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    row = first_row(con, "SELECT stats FROM runs WHERE run_id = ?", [run_id])
    return json.loads(row[0]) if row and row[0] else {}


def record_stats(con: duckdb.DuckDBPyConnection, run_id: str, section: str, values: Any) -> None:
    stats = _stats(con, run_id)
    stats[section] = values
    con.execute("UPDATE runs SET stats = ? WHERE run_id = ?", [json.dumps(stats), run_id])


def begin_run(con: duckdb.DuckDBPyConnection, run_id: str, full: bool, settings: dict[str, Any]) -> list[str]:
    """Record this run with the settings snapshot it runs with; runs left 'running' are marked failed. Returns
    those run ids.

    The caller holds the refresh lock for the whole run, and only a lock holder writes here, so any other
    'running' row was left by a run that died: no process id needs checking."""
    stale = [
        rid
        for (rid,) in con.execute(
            "SELECT run_id FROM runs WHERE status = 'running' AND run_id != ?", [run_id]
        ).fetchall()
    ]
    for rid in stale:
        con.execute("UPDATE runs SET status = 'failed', finished_at = ? WHERE run_id = ?", [now(), rid])
    con.execute(
        "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, NULL, 'running', ?, ?)",
        [run_id, os.getpid(), now(), full, json.dumps({"settings": settings})],
    )
    return stale


def record_gate(con: duckdb.DuckDBPyConnection, run_id: str, gate: Gate) -> None:
    """Add a gate outcome to the run; a failed gate marks the run blocked."""
    gates = _stats(con, run_id).get("gates", {})
    gates[gate.name] = gate.as_dict()
    record_stats(con, run_id, "gates", gates)
    if not gate.passed:
        finish_run(con, run_id, "blocked")


def finish_run(con: duckdb.DuckDBPyConnection, run_id: str, status: str) -> None:
    con.execute("UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?", [status, now(), run_id])


def previous_run(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[str, str, dict[str, Any]] | None:
    """The latest run before ``run_id``: its id, status and stats."""
    row = first_row(
        con, "SELECT run_id, status, stats FROM runs WHERE run_id != ? ORDER BY started_at DESC LIMIT 1", [run_id]
    )
    return (row[0], row[1], json.loads(row[2]) if row[2] else {}) if row else None


def run_summary(settings: Settings, run_id: str) -> dict[str, Any]:
    """The contract's refresh summary, read back from the run record."""
    with warehouse.owner_reader(settings) as con:
        stats = _stats(con, run_id) if con else {}
    docs = stats.get("documents", {})
    chunking = stats.get("chunking", {})
    embedding = stats.get("embedding", {})
    index_stats = stats.get("index", {})
    total = chunking.get("chunks_total", 0)
    return {
        "run_id": run_id,
        "documents": {k: docs.get(k, 0) for k in ("added", "modified", "deleted", "unchanged", "quarantined")},
        "chunks": {
            "total": total,
            "embedded": embedding.get("embedded", 0),
            "reused": max(total - embedding.get("embedded", 0), 0),
            "deleted": chunking.get("chunks_deleted", 0),
            "added": chunking.get("chunks_added", 0),
            "embedding_seconds": embedding.get("model_seconds", 0.0),
        },
        "index": {
            "name": index_stats.get("name", settings.index.alias),
            "version": index_stats.get("version"),
            "count": index_stats.get("count", 0),
            "upserted": index_stats.get("upserted", 0),
            "updated": index_stats.get("updated", 0),
            "deleted": index_stats.get("deleted", 0),
        },
        "published": bool(index_stats.get("published", False)),
        "gates": {**stats.get("gates", {}), **index_stats.get("gates", {})},
        # The earlier run whose index this run found current (nothing changed), or None.
        "unchanged_since": stats.get("unchanged_since"),
    }
