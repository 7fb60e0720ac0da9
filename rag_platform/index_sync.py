"""Make an index version hold exactly the live chunks, then publish it when its gates pass.

Writes are upserts and deletes by chunk id, batch by batch, each recorded in the ledger only after the
backend acknowledged it, so a run killed anywhere converges on the next one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from rag_platform import faults
from rag_platform.backends.base import BulkWriteError
from rag_platform.gates import Gate, all_passed
from rag_platform.index_gates import MATCHES_LEDGER, delete_fraction_gate, ledger_match_gate
from rag_platform.index_ledger import (
    IndexDelta,
    chunk_rows,
    index_delta,
    reconcile_ledger,
    record_deleted,
    record_written,
    vectors_for,
)
from rag_platform.index_plan import (
    IndexPlan,
    IndexTarget,
    mark_served,
    plan_index_version,
    prune_versions,
    register_version,
)
from rag_platform.ingest import now
from rag_platform.records import ChunkMetadata, IndexedChunk
from rag_platform.warehouse import batches, scalar

if TYPE_CHECKING:
    import duckdb

    from rag_platform.backends import IndexBackend

Log = Callable[[str], None]
# Scores the candidate version (name, served version or None) before the alias may move to it.
QualityGate = Callable[[str, "str | None"], Gate]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class IndexPolicy:
    keep_versions: int = 2
    max_delete_fraction: float = 0.5
    write_batch: int = 500


@dataclass(slots=True)
class IndexStats:
    name: str = ""
    version: str = ""
    count: int = 0
    upserted: int = 0
    updated: int = 0  # metadata only: same text and vector, the document changed around them
    deleted: int = 0
    published: bool = False
    new_version: bool = False
    gates: dict[str, Gate] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gates"] = {name: gate.as_dict() for name, gate in self.gates.items()}
        return data


def sync_index(
    con: duckdb.DuckDBPyConnection,
    backend: IndexBackend,
    target: IndexTarget,
    run_id: str,
    *,
    full: bool = False,
    policy: IndexPolicy = IndexPolicy(),
    log: Log = _quiet,
    quality_gate: QualityGate | None = None,
) -> IndexStats:
    """Bring the planned version in line with the ledger's live chunks; publish it if every gate passes.

    The delete-fraction gate runs before any write to the served version; the ledger and quality gates run
    on the written candidate, before the alias moves.
    """
    plan = plan_index_version(con, backend, target.alias, target.fingerprint(backend.kind), full)
    stats = IndexStats(name=target.alias, version=plan.name, new_version=plan.new_version)
    if plan.new_version:
        register_version(con, backend, plan, target, run_id)
    backend.open_for_writes(plan.name)
    reconcile_ledger(con, backend, plan.name)
    delta = index_delta(con, plan.name, target.chunker.fingerprint)

    gate = delete_fraction_gate(con, plan.served, target.chunker.fingerprint, policy.max_delete_fraction)
    stats.gates[gate.name] = gate
    if not gate.passed and not plan.new_version:
        log(f"gate failed, index left unchanged: {gate.message}")
        stats.count = backend.count(plan.name)
        return stats

    _write(con, backend, plan.name, target.model_id, run_id, delta, policy.write_batch, stats, log)
    backend.refresh(plan.name)
    stats.count = backend.count(plan.name)
    live = scalar(con, "SELECT count(*) FROM chunks WHERE chunker = ?", [target.chunker.fingerprint])
    stats.gates[MATCHES_LEDGER] = ledger_match_gate(con, backend, plan.name, live, target.model_id)
    if quality_gate is not None and stats.gates[MATCHES_LEDGER].passed:
        quality = quality_gate(plan.name, plan.served)
        stats.gates[quality.name] = quality
    if not all_passed(stats.gates.values()):
        log("gates failed; the served index was not switched")
        return stats
    publish(con, backend, plan, target.alias, run_id)
    stats.published = True
    prune_versions(con, backend, target.alias, policy.keep_versions, protect={plan.name})
    return stats


def _write(
    con: duckdb.DuckDBPyConnection,
    backend: IndexBackend,
    name: str,
    model_id: str,
    run_id: str,
    delta: IndexDelta,
    write_batch: int,
    stats: IndexStats,
    log: Log,
) -> None:
    total = len(delta.upsert) + len(delta.update_metadata)
    for batch in batches(delta.update_metadata, write_batch):
        faults.checkpoint("index_write")
        rows = chunk_rows(con, batch)
        lost: set[str] = set()
        try:
            backend.update_metadata(name, [_metadata(r, run_id) for r in rows])
        except BulkWriteError as exc:  # the ledger held chunks the index lost: write those whole
            lost = {cid for cid, _ in exc.failures}
            _upsert(con, backend, name, model_id, run_id, [r for r in rows if r["chunk_id"] in lost])
        record_written(con, name, [r for r in rows if r["chunk_id"] not in lost], run_id)
        stats.updated += len(rows) - len(lost)
        stats.upserted += len(lost)
        log(f"indexed {stats.upserted + stats.updated}/{total} chunks")
    for batch in batches(delta.upsert, write_batch):
        faults.checkpoint("index_write")
        _upsert(con, backend, name, model_id, run_id, chunk_rows(con, batch))
        stats.upserted += len(batch)
        log(f"indexed {stats.upserted + stats.updated}/{total} chunks")
    for batch in batches(delta.delete, write_batch):
        faults.checkpoint("index_write")
        backend.delete(name, list(batch))
        record_deleted(con, name, batch)
        stats.deleted += len(batch)


def _metadata(row: dict[str, Any], run_id: str) -> ChunkMetadata:
    return ChunkMetadata(
        chunk_id=row["chunk_id"],
        title=row["title"],
        heading_path=row["heading_path"],
        document_version=row["document_version"],
        run_id=run_id,
    )


def _upsert(
    con: duckdb.DuckDBPyConnection,
    backend: IndexBackend,
    name: str,
    model_id: str,
    run_id: str,
    rows: list[dict[str, Any]],
) -> None:
    """Write ``rows`` (ledger rows of ``chunk_rows``) whole, with their cached vectors, and record them."""
    if not rows:
        return
    vectors = vectors_for(con, model_id, sorted({r["text_hash"] for r in rows}))
    backend.upsert(
        name,
        [
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
        ],
    )
    record_written(con, name, rows, run_id)


def publish(con: duckdb.DuckDBPyConnection, backend: IndexBackend, plan: IndexPlan, alias: str, run_id: str) -> None:
    """Point the alias at the planned version as written now (for the served version itself, this publishes the
    run's in-place writes) and record it."""
    if plan.name != plan.served:
        faults.checkpoint("alias_switch")
    backend.swap_alias(alias, plan.name)
    if plan.name != plan.served:
        con.execute(
            "INSERT INTO alias_events VALUES (?, ?, ?, ?, ?, ?)",
            [alias, plan.name, plan.served, run_id, now(), "publish"],
        )
    mark_served(con, alias, plan.name)
