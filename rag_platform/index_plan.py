"""Index versions: which physical index a run writes, registering a new one, and pruning old ones.

A version's name carries the fingerprint of everything that shapes its contents (chunker, model, dimension,
mapping, backend kind): a change of any builds a new version beside the served one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag_platform.chunking import ChunkerConfig
from rag_platform.ingest import now
from rag_platform.records import stable_hash

if TYPE_CHECKING:
    import duckdb

    from rag_platform.backends import IndexBackend

MAPPING_VERSION = "chunks-v1"


@dataclass(frozen=True, slots=True)
class IndexTarget:
    """What a run indexes: chunks of ``chunker`` embedded by ``model_id``, served under ``alias``."""

    alias: str
    chunker: ChunkerConfig
    model_id: str
    dim: int

    def fingerprint(self, backend_kind: str) -> str:
        return index_fingerprint(self.chunker, self.model_id, self.dim, backend_kind)


@dataclass(frozen=True, slots=True)
class IndexPlan:
    name: str
    build: int
    fingerprint: str
    served: str | None
    new_version: bool


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


def register_version(
    con: duckdb.DuckDBPyConnection, backend: IndexBackend, plan: IndexPlan, target: IndexTarget, run_id: str
) -> None:
    """Create the planned version in the backend (idempotent) and record it as ``building``."""
    chunker = target.chunker
    meta = {
        "alias": target.alias,
        "fingerprint": plan.fingerprint,
        "chunker": chunker.describe(),
        "chunker_fingerprint": chunker.fingerprint,
        "model": target.model_id,
        "dim": target.dim,
    }
    backend.create_version(plan.name, target.dim, meta)
    con.execute(
        """INSERT OR IGNORE INTO index_versions (name, alias, fingerprint, build, chunker, chunker_config, model_id,
               dim, backend, status, created_at, created_run)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'building', ?, ?)""",
        [
            plan.name,
            target.alias,
            plan.fingerprint,
            plan.build,
            chunker.fingerprint,
            json.dumps(chunker.describe()),
            target.model_id,
            target.dim,
            backend.kind,
            now(),
            run_id,
        ],
    )


def mark_served(con: duckdb.DuckDBPyConnection, alias: str, name: str) -> None:
    """Record ``name`` as the alias's served version (the previous one stays kept as ``ready``) and what it
    serves (``published_chunks``: the ledger as of this publication, which later unpublished writes to the
    same version do not change)."""
    con.execute("UPDATE index_versions SET status = 'ready' WHERE alias = ? AND status = 'served'", [alias])
    con.execute(
        "UPDATE index_versions SET status = 'served', published_at = coalesce(published_at, ?) WHERE name = ?",
        [now(), name],
    )
    con.execute("DELETE FROM published_chunks WHERE alias = ?", [alias])
    con.execute(
        """INSERT INTO published_chunks SELECT ?, index_name, chunk_id, document_id FROM index_state
           WHERE index_name = ?""",
        [alias, name],
    )


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
