"""The refresh steps the Dagster assets call, each holding the single warehouse writer only while it runs.

The run record (``runs`` table) collects each step's counts under the Dagster run id, so the CLI, the UI
metadata and ``status`` all report the same figures.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_platform import warehouse
from rag_platform.chunking import Chunker, ChunkerConfig
from rag_platform.embedding import Embedder, make_embedder
from rag_platform.indexing import (
    ChunkStats,
    EmbedStats,
    IndexStats,
    QualityGate,
    embed_missing,
    sync_chunks,
    sync_index,
)
from rag_platform.ingest import IngestStats, ingest_sources, list_sources, now
from rag_platform.lineage import quarantine_rows
from rag_platform.locking import pid_alive
from rag_platform.progress import Progress
from rag_platform.quality import (
    SuiteOutcome,
    embedding_profile,
    validate_chunks,
    validate_documents,
    validate_embeddings,
)
from rag_platform.warehouse import first_row, registered

if TYPE_CHECKING:
    import duckdb

    from rag_platform.backends import IndexBackend
    from rag_platform.config import EmbeddingSettings, Settings

Log = Callable[[str], None]
logger = logging.getLogger("rag_platform.refresh")


def _tee(log: Log | None) -> Log:
    """Send progress to the caller's log (Dagster's, shown in the UI) and to this module's logger (stderr)."""

    def emit(message: str) -> None:
        logger.info(message)
        if log is not None:
            log(message)

    return emit


def chunker_config(settings: Settings) -> ChunkerConfig:
    return ChunkerConfig(settings.chunker.max_tokens, settings.chunker.overlap, settings.embedding.model)


@functools.lru_cache(maxsize=4)
def cached_embedder(embedding: EmbeddingSettings, cache_dir: Path | None = None) -> Embedder:
    """One embedder per process and configuration: the model loads once, on first use."""
    return make_embedder(embedding, cache_dir)


@functools.lru_cache(maxsize=4)
def _chunker(config: ChunkerConfig) -> Chunker:
    return Chunker(config)


def record_stats(con: duckdb.DuckDBPyConnection, run_id: str, section: str, values: dict[str, Any]) -> None:
    row = first_row(con, "SELECT stats FROM runs WHERE run_id = ?", [run_id])
    stats = json.loads(row[0]) if row and row[0] else {}
    stats[section] = values
    con.execute("UPDATE runs SET stats = ? WHERE run_id = ?", [json.dumps(stats), run_id])


def begin_run(con: duckdb.DuckDBPyConnection, run_id: str, full: bool) -> list[str]:
    """Record this run; runs left 'running' by a dead process are marked failed. Returns those run ids."""
    stale = [
        rid
        for rid, pid in con.execute(
            "SELECT run_id, pid FROM runs WHERE status = 'running' AND run_id != ?", [run_id]
        ).fetchall()
        if pid == os.getpid() or not pid_alive(pid)
    ]
    for rid in stale:
        con.execute("UPDATE runs SET status = 'failed', finished_at = ? WHERE run_id = ?", [now(), rid])
    con.execute(
        "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, NULL, 'running', ?, '{}')", [run_id, os.getpid(), now(), full]
    )
    return stale


# What each asset's content is, as one hash: Dagster records it as the asset's data version, so the UI can
# tell which downstream assets are stale and why.
_DATA_VERSION_SQL = {
    "raw_documents": "SELECT uri || ':' || coalesce(document_version, '-') AS item FROM file_state",
    "document_chunks": "SELECT chunk_id AS item FROM chunks WHERE chunker = $chunker",
    "chunk_embeddings": """SELECT c.text_hash AS item FROM chunks c JOIN embedding_cache e
                           ON e.text_hash = c.text_hash AND e.model_id = $model WHERE c.chunker = $chunker""",
    "search_index": """SELECT s.index_name || ':' || s.chunk_id || ':' || s.text_hash AS item
                       FROM index_state s JOIN index_versions v ON v.name = s.index_name
                       WHERE v.alias = $alias AND v.status = 'served'""",
}


def data_version(settings: Settings, asset: str) -> str:
    """A content hash of ``asset``: the same content always gives the same version."""
    params = {
        "chunker": chunker_config(settings).fingerprint,
        "model": cached_embedder(settings.embedding, settings.cache_dir).model_id,
        "alias": settings.index.alias,
    }
    sql = _DATA_VERSION_SQL[asset]
    with warehouse.writer(settings) as con:
        row = first_row(
            con,
            f"SELECT coalesce(sha256(string_agg(item, ',' ORDER BY item)), 'empty') FROM ({sql})",
            {k: v for k, v in params.items() if f"${k}" in sql},
        )
    return str(row[0])[:16] if row else "empty"


def prewarm(settings: Settings) -> threading.Thread:
    """Load what later steps need on a background thread; steps then find them loaded. Failures are left for
    the step that needs the component to report."""
    import importlib

    def open_backend() -> None:
        from rag_platform.backends import make_backend

        backend = make_backend(settings)
        try:
            backend.list_versions(settings.index.alias)
        finally:
            backend.close()

    def load() -> None:
        # In the order the steps need them; all load while dbt runs.
        steps: list[Callable[[], object]] = [
            functools.partial(importlib.import_module, "great_expectations"),
            open_backend,
            lambda: cached_embedder(settings.embedding, settings.cache_dir).dimension,
        ]
        for step in steps:
            try:
                step()
            except Exception:  # reported by the step that needs it
                logger.debug("prewarm failed", exc_info=True)

    thread = threading.Thread(target=load, name="rag-prewarm", daemon=True)
    thread.start()
    return thread


def check_backend_reachable(settings: Settings) -> None:
    """Fail a run before it writes anything when the search index cannot be reached."""
    from rag_platform.backends import make_backend

    backend = make_backend(settings)
    try:
        backend.resolve_alias(settings.index.alias)
    finally:
        backend.close()


def ingest(settings: Settings, run_id: str, full: bool = False) -> IngestStats:
    check_backend_reachable(settings)
    with warehouse.writer(settings) as con:
        begin_run(con, run_id, full)
        roots = [Path(p) for p in list_sources(con)]
        stats = ingest_sources(con, roots, run_id, settings.source.max_bytes)
        record_stats(con, run_id, "documents", stats.as_dict())
    return stats


def quarantine_report(settings: Settings) -> list[dict[str, Any]]:
    """Documents currently kept out of the index, with reasons (read inside the run, from the warehouse)."""
    with warehouse.writer(settings) as con:
        return quarantine_rows(con)


def chunk(settings: Settings, run_id: str, full: bool = False) -> ChunkStats:
    with warehouse.writer(settings) as con:
        stats = sync_chunks(con, _chunker(chunker_config(settings)), run_id, full)
        record_stats(con, run_id, "chunking", as_dict(stats))
    return stats


def as_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def check_documents(settings: Settings) -> SuiteOutcome:
    """Validate the current documents (the dbt model): corpus-level rules only; a document failing a rule of
    its own was quarantined at ingest (quality.document_problem)."""
    with warehouse.writer(settings) as con:
        frame = con.execute("SELECT uri, char_length FROM current_documents").df()
    return validate_documents(frame)


def check_chunks(settings: Settings) -> SuiteOutcome:
    """Validate every live chunk of the current chunker (lengths, not texts, are loaded)."""
    with warehouse.writer(settings) as con:
        frame = con.execute(
            """SELECT chunk_id, document_id, length(text) AS text_length, token_count
               FROM chunks WHERE chunker = ?""",
            [chunker_config(settings).fingerprint],
        ).df()
    return validate_chunks(frame, settings.chunker.max_tokens)


def embed(settings: Settings, run_id: str, log: Log | None = None) -> EmbedStats:
    embedder = cached_embedder(settings.embedding, settings.cache_dir)
    with warehouse.writer(settings) as con:
        stats = embed_missing(
            con,
            embedder,
            chunker_config(settings).fingerprint,
            run_id,
            batch_size=settings.embedding.commit_every,
            progress=Progress("embedding", _tee(log)),
        )
        record_stats(con, run_id, "embedding", as_dict(stats))
    return stats


def check_embeddings(settings: Settings, run_id: str, full: bool = False) -> SuiteOutcome:
    """Validate the vectors this run produced (all live vectors on a full rebuild). Vectors that fail are
    dropped from the cache, so no unvalidated vector can reach an index on a later run."""
    embedder = cached_embedder(settings.embedding, settings.cache_dir)
    query = """
        SELECT DISTINCT e.text_hash, e.vector FROM embedding_cache e
        JOIN chunks c ON c.text_hash = e.text_hash AND c.chunker = ?
        WHERE e.model_id = ? {}
    """.format("" if full else "AND e.run_id = ?")
    params: list[Any] = [chunker_config(settings).fingerprint, embedder.model_id]
    if not full:
        params.append(run_id)
    with warehouse.writer(settings) as con:
        rows = con.execute(query, params).fetchall()
    if not rows:
        return SuiteOutcome("embeddings_pass_quality_suite", True, 0)
    outcome = validate_embeddings(embedding_profile([r[0] for r in rows], [r[1] for r in rows]), embedder.dimension)
    if not outcome.passed:
        with warehouse.writer(settings) as con, registered(con, "failed", {"text_hash": [r[0] for r in rows]}):
            con.execute(
                "DELETE FROM embedding_cache WHERE model_id = ? AND text_hash IN (SELECT text_hash FROM failed)",
                [embedder.model_id],
            )
    return outcome


def retrieval_quality_gate(
    settings: Settings, con: duckdb.DuckDBPyConnection, backend: IndexBackend, embedder: Embedder, run_id: str
) -> QualityGate | None:
    """When ``eval.dataset`` is set: score each candidate version on it (hybrid nDCG@10 and friends), record the
    metrics, and block publishing when nDCG@10 drops more than ``gates.ndcg_tolerance`` below the last
    published evaluation of the alias. Judgments name documents by file name (``guide.md`` -> ``guide``)."""
    if not settings.eval.dataset:
        return None
    from rag_platform.eval_runner import score_version
    from rag_platform.evaluation import load_beir, regression_gate
    from rag_platform.retrieval import Searcher

    dataset = load_beir(Path(settings.eval.dataset), with_corpus=False)
    alias = settings.index.alias

    def gate(candidate: str, served: str | None) -> dict[str, Any]:
        metrics, _ = score_version(Searcher(settings, embedder, backend), candidate, dataset, ["hybrid"])
        scores = metrics["hybrid"]
        baseline = first_row(
            con,
            """SELECT e.ndcg_at_10 FROM evaluations e JOIN runs r ON r.run_id = e.run_id
               WHERE e.alias = ? AND e.dataset = ? AND r.status = 'succeeded'
               ORDER BY e.evaluated_at DESC LIMIT 1""",
            [alias, str(dataset_path(settings))],
        )
        con.execute(
            "INSERT INTO evaluations VALUES (?, ?, ?, ?, 'hybrid', ?, ?, ?, ?, ?, ?)",
            [
                candidate,
                alias,
                run_id,
                str(dataset_path(settings)),
                sum(1 for q in dataset.queries if dataset.qrels.get(q)),
                scores["ndcg@10"],
                scores["recall@10"],
                scores["recall@100"],
                scores["mrr@10"],
                now(),
            ],
        )
        return regression_gate(scores["ndcg@10"], baseline[0] if baseline else None, settings.gates.ndcg_tolerance)

    return gate


def dataset_path(settings: Settings) -> Path:
    return Path(settings.eval.dataset).resolve()


def index(
    settings: Settings, run_id: str, backend: IndexBackend, full: bool = False, log: Log | None = None
) -> IndexStats:
    embedder = cached_embedder(settings.embedding, settings.cache_dir)
    with warehouse.writer(settings) as con:
        stats = sync_index(
            con,
            backend,
            alias=settings.index.alias,
            chunker=chunker_config(settings),
            model_id=embedder.model_id,
            dim=embedder.dimension,
            run_id=run_id,
            full=full,
            keep_versions=settings.index.keep_versions,
            max_delete_fraction=settings.gates.max_delete_fraction,
            write_batch=settings.index.write_batch,
            log=_tee(log),
            quality_gate=retrieval_quality_gate(settings, con, backend, embedder, run_id),
        )
        record_stats(con, run_id, "index", stats.as_dict())
        con.execute(
            "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?",
            ["succeeded" if stats.published else "blocked", now(), run_id],
        )
    warehouse.export_snapshot(settings)
    return stats


def run_summary(settings: Settings, run_id: str) -> dict[str, Any]:
    """The contract's refresh summary, read back from the run record."""
    with warehouse.owner_reader(settings) as con:
        row = first_row(con, "SELECT stats FROM runs WHERE run_id = ?", [run_id]) if con else None
    stats = json.loads(row[0]) if row and row[0] else {}
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
            "deleted": index_stats.get("deleted", 0),
        },
        "published": bool(index_stats.get("published", False)),
        "gates": {**stats.get("gates", {}), **index_stats.get("gates", {})},
    }


def record_gate(settings: Settings, run_id: str, name: str, outcome: SuiteOutcome) -> None:
    with warehouse.writer(settings) as con:
        row = first_row(con, "SELECT stats FROM runs WHERE run_id = ?", [run_id])
        stats = json.loads(row[0]) if row and row[0] else {}
        gates = stats.get("gates", {})
        gates[name] = {"passed": outcome.passed, "message": outcome.message}
        record_stats(con, run_id, "gates", gates)
        if not outcome.passed:
            con.execute("UPDATE runs SET status = 'blocked', finished_at = ? WHERE run_id = ?", [now(), run_id])
