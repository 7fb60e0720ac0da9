"""The refresh steps, in run order. Each receives the run's ``RunParts`` (settings resolved once per run)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rag_platform import __version__
from rag_platform.chunk_sync import ChunkStats, sync_chunks
from rag_platform.config import load_settings, write_published_model
from rag_platform.embedding_sync import EmbedStats, embed_missing
from rag_platform.gates import Gate
from rag_platform.index_sync import IndexStats, sync_index
from rag_platform.ingest import IngestStats, ingest_sources, list_sources
from rag_platform.lineage import quarantine_rows
from rag_platform.parts import RunParts
from rag_platform.pipeline.data_versions import data_version
from rag_platform.pipeline.retrieval_gate import retrieval_quality_gate
from rag_platform.pipeline.run_record import begin_run, finish_run, previous_run, record_gate, record_stats
from rag_platform.progress import Progress
from rag_platform.quality import (
    embedding_profile,
    validate_chunks,
    validate_documents,
    validate_embeddings,
)
from rag_platform.warehouse import export_snapshot, registered, scalar

Log = Callable[[str], None]
logger = logging.getLogger("rag_platform.refresh")


def _tee(log: Log | None) -> Log:
    """Send progress to the caller's log (Dagster's, shown in the UI) and to this module's logger (stderr)."""

    def emit(message: str) -> None:
        logger.info(message)
        if log is not None:
            log(message)

    return emit


def as_dict(stats: Any) -> dict[str, Any]:
    return dataclasses.asdict(stats)


@dataclasses.dataclass(frozen=True, slots=True)
class Ingested:
    stats: IngestStats
    data_version: str  # of raw_documents after this ingest
    current_since: str | None  # the earlier run whose served index is still current, when nothing changed


def ingest(parts: RunParts, run_id: str, full: bool = False) -> Ingested:
    """Record the run (with its settings snapshot), then append new document versions and tombstones. Fails
    before writing anything when the search index cannot be reached.

    When the previous run succeeded, this run starts from exactly what it started from (the documents' data
    version, the settings, chunker, model and code) and its index version is still served, nothing downstream
    can change: the served state is recorded as this run's outcome and the run is finished here. After a run
    that failed, crashed or was blocked the next run does all the work again (the dbt models and gates may
    have seen documents that are gone since)."""
    alias = parts.settings.index.alias
    served = parts.backend.resolve_alias(alias)
    with parts.warehouse() as con:
        begin_run(con, run_id, full, parts.settings.as_dict())
        roots = [Path(p) for p in list_sources(con)]
        stats = ingest_sources(con, roots, run_id, parts.settings.source.max_bytes)
        record_stats(con, run_id, "documents", stats.as_dict())
        version = data_version(parts, "raw_documents", con)
        inputs = {
            "documents": version,
            "settings": parts.settings_fingerprint,
            "chunker": parts.chunker_config.fingerprint,
            "model": parts.embedder.model_id,
            "code": __version__,
        }
        record_stats(con, run_id, "inputs", inputs)
        previous = None if full or served is None else previous_run(con, run_id)
        if previous is None or previous[1] != "succeeded" or not _still_current(previous[2], inputs, served):
            return Ingested(stats, version, None)
        previous_id, _, previous_stats = previous
        total = scalar(con, "SELECT count(*) FROM chunks WHERE chunker = ?", [parts.chunker_config.fingerprint])
        record_stats(con, run_id, "chunking", {"chunks_total": total, "chunks_added": 0, "chunks_deleted": 0})
        record_stats(con, run_id, "embedding", {"embedded": 0, "model_seconds": 0.0})
        # The count the last run read from the backend: nothing has written to the served version since.
        count = int(previous_stats["index"].get("count", 0))
        record_stats(con, run_id, "index", IndexStats(alias, served or "", count, published=True).as_dict())
        record_stats(con, run_id, "unchanged_since", previous_id)
        finish_run(con, run_id, "succeeded")
    return Ingested(stats, version, previous_id)


def _still_current(previous: dict[str, Any], inputs: dict[str, Any], served: str | None) -> bool:
    index = previous.get("index", {})
    return previous.get("inputs") == inputs and index.get("version") == served and bool(index.get("published"))


def quarantine_report(parts: RunParts) -> list[dict[str, Any]]:
    """Documents currently kept out of the index, with reasons (read inside the run, from the warehouse)."""
    with parts.warehouse() as con:
        return quarantine_rows(con)


def check_documents(parts: RunParts) -> Gate:
    """Validate the current documents (the dbt model): corpus-level rules only; a document failing a rule of
    its own was quarantined at ingest (quality.document_problem)."""
    with parts.warehouse() as con:
        frame = con.execute("SELECT uri, char_length FROM current_documents").df()
    return validate_documents(frame)


def chunk(parts: RunParts, run_id: str, full: bool = False) -> ChunkStats:
    with parts.warehouse() as con:
        stats = sync_chunks(con, parts.chunker, run_id, full)
        record_stats(con, run_id, "chunking", as_dict(stats))
    return stats


def check_chunks(parts: RunParts) -> Gate:
    """Validate every live chunk of the current chunker (lengths, not texts, are loaded)."""
    with parts.warehouse() as con:
        frame = con.execute(
            """SELECT chunk_id, document_id, length(text) AS text_length, token_count
               FROM chunks WHERE chunker = ?""",
            [parts.chunker_config.fingerprint],
        ).df()
    return validate_chunks(frame, parts.settings.chunker.max_tokens)


def embed(parts: RunParts, run_id: str, log: Log | None = None) -> EmbedStats:
    with parts.warehouse() as con:
        stats = embed_missing(
            con,
            parts.embedder,
            parts.chunker_config.fingerprint,
            run_id,
            batch_size=parts.settings.embedding.commit_every,
            progress=Progress("embedding", _tee(log)),
        )
        record_stats(con, run_id, "embedding", as_dict(stats))
    return stats


def check_embeddings(parts: RunParts, run_id: str, full: bool = False) -> Gate:
    """Validate the vectors this run produced, and those of runs that never succeeded (a killed run's cached
    vectors are checked before any run publishes them); all live vectors on a full rebuild. Vectors that fail
    are dropped from the cache, so no unvalidated vector can reach an index on a later run."""
    embedder = parts.embedder
    unvalidated = "AND (e.run_id = ? OR e.run_id NOT IN (SELECT run_id FROM runs WHERE status = 'succeeded'))"
    query = f"""
        SELECT DISTINCT e.text_hash, e.vector FROM embedding_cache e
        JOIN chunks c ON c.text_hash = e.text_hash AND c.chunker = ?
        WHERE e.model_id = ? {"" if full else unvalidated}
    """
    params: list[Any] = [parts.chunker_config.fingerprint, embedder.model_id]
    if not full:
        params.append(run_id)
    with parts.warehouse() as con:
        rows = con.execute(query, params).fetchall()
    if not rows:
        return Gate.from_failures("embeddings_pass_quality_suite", 0, ())
    gate = validate_embeddings(embedding_profile([r[0] for r in rows], [r[1] for r in rows]), embedder.dimension)
    if not gate.passed:
        with parts.warehouse() as con, registered(con, "failed", {"text_hash": [r[0] for r in rows]}):
            con.execute(
                "DELETE FROM embedding_cache WHERE model_id = ? AND text_hash IN (SELECT text_hash FROM failed)",
                [embedder.model_id],
            )
    return gate


def index(parts: RunParts, run_id: str, full: bool = False, log: Log | None = None) -> IndexStats:
    """Sync the index version, publish it when its gates pass, and export the read snapshot."""
    with parts.warehouse() as con:
        stats = sync_index(
            con,
            parts.backend,
            parts.index_target(),
            run_id,
            full=full,
            policy=parts.index_policy(),
            log=_tee(log),
            quality_gate=retrieval_quality_gate(parts, con, run_id),
        )
        record_stats(con, run_id, "index", stats.as_dict())
        finish_run(con, run_id, "succeeded" if stats.published else "blocked")
        if stats.published and parts.min_gain is not None:
            # A fine-tuned candidate now serves: queries and later refreshes use its model from here on.
            configured = load_settings(parts.home, published=False).embedding.model
            model = parts.settings.embedding.model
            write_published_model(parts.home, configured, model, Path(model).name)
    export_snapshot(parts.settings)
    return stats


def gate_recorded(parts: RunParts, run_id: str, gate: Gate) -> Gate:
    """Record a gate outcome in the run record (a failure marks the run blocked) and return it."""
    gates_recorded(parts, run_id, [gate])
    return gate


def gates_recorded(parts: RunParts, run_id: str, gates: Sequence[Gate]) -> None:
    """Record several gate outcomes (a step's dbt tests) with one warehouse connection."""
    if not gates:
        return
    with parts.warehouse() as con:
        for gate in gates:
            record_gate(con, run_id, gate)
